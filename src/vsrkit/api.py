"""The Python API. The CLI and the web UI call these functions; there is one code path.

    >>> import vsrkit
    >>> result = vsrkit.upscale("clip.mp4", "clip_x4.mkv", model="flashvsr-v1.1", scale=4)
    >>> with vsrkit.Upscaler("lanczos", device="cpu") as up:    # weights stay loaded
    ...     for path in ["a.mp4", "b.mp4"]:
    ...         up.upscale(path, scale=2, on_event=print)

Options are the fields of ``vsrkit.Options`` passed as keywords (``scale=2``, ``crf=18``,
``color_fix="wavelet"`` ...); they are validated before any work. Errors are the typed
``vsrkit.errors`` classes. Progress arrives as ``vsrkit.progress.Event`` through ``on_event``;
``cancel=CancelToken()`` stops a run at the next frame (``Interrupted`` carries the partial
file); ``on_frames(outputs, infos, inputs)`` sees every output batch as it is produced.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from . import engines
from .errors import Interrupted, UsageError, VsrkitError
from .options import Options
from .progress import CancelToken, EventCallback
from .run import FramesCallback, Result, run

_FIELDS = {f.name for f in dataclasses.fields(Options)}


def make_options(base: Options | None = None, **kwargs: Any) -> Options:
    """``Options`` from keywords, naming any unknown one."""
    unknown = sorted(set(kwargs) - _FIELDS)
    if unknown:
        raise UsageError(f"unknown option(s): {', '.join(unknown)}")
    return (base or Options()).replace(**kwargs).validate()


class Upscaler:
    """A model kept loaded across videos. Per-call keywords override the constructor's."""

    def __init__(self, model: str | None = None, device: str | None = None, *,
                 options: Options | None = None, **kwargs: Any):
        base = options or Options()
        if model is not None:
            kwargs["model"] = model
        if device is not None:
            kwargs["device"] = device
        self.options = make_options(base, **kwargs)
        self.engine = engines.create(self.options)

    def upscale(self, input: str | os.PathLike, output: str | os.PathLike | None = None, *,
                on_event: EventCallback | None = None, cancel: CancelToken | None = None,
                on_frames: FramesCallback | None = None,
                notice: Callable[[str], None] | None = None, **kwargs: Any) -> Result:
        opts = make_options(self.options, **kwargs)
        if opts.model != self.options.model:
            raise UsageError(f"this Upscaler holds {self.options.model}; make another for {opts.model}")
        return run(input, output, opts, engine=self.engine, on_event=on_event, cancel=cancel,
                   on_frames=on_frames, notice=notice)

    def close(self) -> None:
        self.engine.close()

    def __enter__(self) -> "Upscaler":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def upscale(input: str | os.PathLike, output: str | os.PathLike | None = None, *,
            on_event: EventCallback | None = None, cancel: CancelToken | None = None,
            on_frames: FramesCallback | None = None, notice: Callable[[str], None] | None = None,
            **options: Any) -> Result:
    """Upscale one video or image sequence; returns a ``Result`` (output path, frames, fps)."""
    with Upscaler(**options) as up:
        return up.upscale(input, output, on_event=on_event, cancel=cancel, on_frames=on_frames,
                          notice=notice)


@dataclass
class BatchItem:
    input: Path
    output: Path | None
    status: str  # done, skipped, failed, interrupted
    reason: str = ""
    frames: int = 0
    seconds: float = 0.0


@dataclass
class BatchResult:
    items: list[BatchItem] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for i in self.items if i.status == status)

    def table(self) -> str:
        rows = [("status", "input", "frames", "fps", "output / reason")]
        for i in self.items:
            fps = f"{i.frames / i.seconds:.2f}" if i.seconds > 0 and i.frames else ""
            rows.append((i.status, i.input.name, str(i.frames or ""), fps,
                         i.reason or (str(i.output) if i.output else "")))
        widths = [max(len(r[c]) for r in rows) for c in range(4)]
        lines = ["  ".join(r[c].ljust(widths[c]) for c in range(4)) + "  " + r[4] for r in rows]
        lines.append(f"{self.count('done')} done, {self.count('skipped')} skipped, "
                     f"{self.count('failed')} failed")
        return "\n".join(lines)


def upscale_folder(folder: str | os.PathLike, out_folder: str | os.PathLike | None = None, *,
                   upscaler: Upscaler | None = None, on_event: EventCallback | None = None,
                   on_item: Callable[[BatchItem], None] | None = None,
                   cancel: CancelToken | None = None, notice: Callable[[str], None] | None = None,
                   **options: Any) -> BatchResult:
    """Every video in ``folder`` with one model load. Outputs that already exist are complete
    (files appear only by atomic rename) and are skipped unless ``overwrite=True``; one
    failing file does not stop the rest."""
    from .io.sink import default_output_path
    from .io.source import list_videos, open_source

    folder = Path(folder)
    out_dir = Path(out_folder) if out_folder is not None else None
    if out_dir is not None and not out_dir.is_dir():
        from .errors import OutputError

        raise OutputError(f"{out_dir}: output folder does not exist")
    own = upscaler is None
    up = upscaler or Upscaler(**options)
    opts = make_options(up.options, **({} if own else options))
    result = BatchResult()
    try:
        for path in list_videos(folder):
            if cancel is not None and cancel.cancelled:
                break
            item = BatchItem(path, None, "failed")
            try:
                with open_source(path, opts) as src:
                    from .plan import output_size

                    label = output_size(src.spec.height, src.spec.width, opts,
                                        up.engine.native_scale).label
                    target = default_output_path(path, src, label)
                if out_dir is not None:
                    target = out_dir / target.name
                item.output = target
                if target.exists() and not opts.overwrite:
                    item.status, item.reason = "skipped", "output exists"
                else:
                    r = up.upscale(path, target, on_event=on_event, cancel=cancel, notice=notice,
                                   **_diff(opts, up.options))
                    item.status, item.frames, item.seconds = "done", r.frames, r.seconds
            except Interrupted as e:
                item.status, item.reason, item.frames = "interrupted", str(e), e.frames
                result.items.append(item)
                if on_item:
                    on_item(item)
                raise
            except VsrkitError as e:
                item.reason = str(e)
            result.items.append(item)
            if on_item:
                on_item(item)
    finally:
        if own:
            up.close()
    return result


def _diff(opts: Options, base: Options) -> dict[str, Any]:
    return {f: getattr(opts, f) for f in _FIELDS if getattr(opts, f) != getattr(base, f)}
