"""Output sizes and the run's plan. Pure arithmetic first (hypothesis-tested), then the
description the CLI prints for ``--dry-run``."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError
from .options import Options


@dataclass(frozen=True)
class SizeChoice:
    out_h: int
    out_w: int
    label: str  # for default output names: "x4", "x1.5", "1920x1080"


def output_size(in_h: int, in_w: int, opts: Options, native_scale: float) -> SizeChoice:
    """Output (H, W) from ``--scale``, ``--width/--height``, ``--resolution`` and
    ``--max-resolution``; aspect kept when one side is given. Sizes are rounded to the nearest
    integer (at least 1); odd sizes are allowed (the sink handles them)."""
    if opts.width and opts.height:
        h, w, label = opts.height, opts.width, f"{opts.width}x{opts.height}"
    elif opts.width:
        h, w = max(1, round(in_h * opts.width / in_w)), opts.width
        label = f"{w}x{h}"
    elif opts.height:
        h, w = opts.height, max(1, round(in_w * opts.height / in_h))
        label = f"{w}x{h}"
    elif opts.resolution:
        s = opts.resolution / min(in_h, in_w)
        h, w = max(1, round(in_h * s)), max(1, round(in_w * s))
        label = f"{w}x{h}"
    else:
        s = opts.scale if opts.scale is not None else native_scale
        h, w = max(1, round(in_h * s)), max(1, round(in_w * s))
        label = f"x{s:g}"
    if opts.max_resolution and max(h, w) > opts.max_resolution:
        s = opts.max_resolution / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
        label = f"{w}x{h}"
    if h * w > 16384 * 16384:
        raise UsageError(f"output {w}x{h} is larger than 16384x16384")
    return SizeChoice(h, w, label)
