"""Progress events, the cancel token, and the terminal renderers the CLI uses."""

from __future__ import annotations

import sys
import threading
import time
from dataclasses import dataclass
from typing import Callable, TextIO


@dataclass(frozen=True)
class Event:
    """One progress report. ``stage``: probing, loading, upscaling, finalizing, done."""

    stage: str
    frames_done: int = 0
    frames_total: int | None = None
    fps: float | None = None  # output frames per second, over the last few seconds
    eta: float | None = None  # seconds
    message: str | None = None

    @property
    def fraction(self) -> float | None:
        if not self.frames_total:
            return None
        return min(1.0, self.frames_done / self.frames_total)


EventCallback = Callable[[Event], None]


class CancelToken:
    """Set from any thread (a signal handler, a UI button); the run stops at the next frame."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self.reason = "cancelled"

    def cancel(self, reason: str = "cancelled") -> None:
        self.reason = reason
        self._event.set()

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()


class RateMeter:
    """Frames per second over a sliding window, and the ETA it implies."""

    def __init__(self, window: float = 5.0) -> None:
        self.window = window
        self.samples: list[tuple[float, int]] = []

    def update(self, done: int, total: int | None) -> tuple[float | None, float | None]:
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[1][0] > self.window:
            self.samples.pop(0)
        t0, d0 = self.samples[0]
        fps = (done - d0) / (now - t0) if now > t0 and done > d0 else None
        eta = (total - done) / fps if fps and total else None
        return fps, eta


def _hms(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


def format_event(e: Event) -> str:
    total = f"/{e.frames_total}" if e.frames_total else ""
    fps = f"{e.fps:.2f} fps" if e.fps else "-- fps"
    return f"{e.stage}: {e.frames_done}{total} frames, {fps}, ETA {_hms(e.eta)}"


class TerminalProgress:
    """A one-line bar on a TTY; plain log lines every ``log_every`` seconds otherwise."""

    def __init__(self, stream: TextIO = sys.stderr, log_every: float = 5.0) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.log_every = log_every
        self.last = 0.0
        self.stage: str | None = None

    def __call__(self, e: Event) -> None:
        if e.stage != "upscaling":
            if e.stage in ("probing", "done"):  # quick, or reported by the caller
                return
            if self.tty and self.stage == "upscaling":
                self.stream.write("\n")
            if e.stage != self.stage or e.message:
                self.stream.write(f"{e.stage}{': ' + e.message if e.message else ''}\n")
            self.stage = e.stage
            self.stream.flush()
            return
        self.stage = e.stage
        now = time.monotonic()
        if self.tty:
            if now - self.last < 0.1 and e.frames_done != e.frames_total:
                return
            frac = e.fraction
            bar = ""
            if frac is not None:
                n = int(frac * 30)
                bar = f"[{'#' * n}{'.' * (30 - n)}] {frac * 100:5.1f}% "
            self.stream.write(f"\r{bar}{format_event(e)}\033[K")
        else:
            if now - self.last < self.log_every and e.frames_done != e.frames_total:
                return
            self.stream.write(format_event(e) + "\n")
        self.last = now
        self.stream.flush()
