"""User-facing errors. Each class carries the CLI exit code (docs/errors.md lists them).

Classes also subclass the matching builtin, so callers may catch either
(``except ValueError`` still catches a bad option), as PyAV's errors do.
"""

from __future__ import annotations


class VsrkitError(Exception):
    """Base of every error vsrkit reports to a user as one line."""

    exit_code = 1


class UsageError(VsrkitError, ValueError):
    """Bad option values or conflicting options."""

    exit_code = 2


class InputError(VsrkitError, ValueError):
    """Missing input, not media, no video stream, zero frames, corrupt stream."""

    exit_code = 3


class OutputError(VsrkitError, OSError):
    """Output exists, folder missing, output equals input, codec/container mismatch."""

    exit_code = 4


class WeightsError(VsrkitError, RuntimeError):
    """Weights missing (offline) or not the expected checkpoint (keys, shapes)."""

    exit_code = 5


class ResourceError(VsrkitError, RuntimeError):
    """Out of memory that no smaller plan avoids, or no such device."""

    exit_code = 6


class Interrupted(VsrkitError):
    """Stopped by Ctrl-C, SIGTERM or a cancel token; the partial output was finalized."""

    exit_code = 130

    def __init__(self, message: str, partial_path: str | None = None, frames: int = 0):
        super().__init__(message)
        self.partial_path = partial_path
        self.frames = frames
