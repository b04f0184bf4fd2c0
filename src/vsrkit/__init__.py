"""vsrkit: upscale and restore real videos with diffusion video super-resolution.

Public API: ``upscale``, ``upscale_folder``, ``Upscaler``, ``Options``, the error classes,
``CancelToken`` and ``Event``. See ``vsrkit.api`` for examples. Names are imported lazily so
that ``import vsrkit.errors`` (or the CLI's ``--help``) does not pull in torch and PyAV.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "upscale": "api", "upscale_folder": "api", "Upscaler": "api", "make_options": "api",
    "BatchResult": "api", "Result": "run", "Options": "options", "CancelToken": "progress",
    "Event": "progress", "VsrkitError": "errors", "UsageError": "errors", "InputError": "errors",
    "OutputError": "errors", "WeightsError": "errors", "ResourceError": "errors",
    "Interrupted": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'vsrkit' has no attribute {name!r}")
