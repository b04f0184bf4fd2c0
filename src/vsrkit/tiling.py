"""Pure arithmetic of padding, spatial tiles, blend weights and temporal segments.

No tensors or devices here except ``blend_mask``, so hypothesis can test the rules: tiles cover
the canvas, weights never reach zero inside it, segments keep every frame exactly once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


def round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def pad_to_multiple(h: int, w: int, multiple: int) -> tuple[int, int]:
    """Padding (bottom, right) that brings (h, w) to multiples of ``multiple``."""
    return round_up(h, multiple) - h, round_up(w, multiple) - w


def tile_grid(size: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` spans covering ``[0, size)``.

    Starts are multiples of ``multiple``; neighbours overlap by at least ``overlap``; the last
    tile is shifted back so every tile has the full ``tile`` length (when ``size >= tile``).
    """
    if tile <= 0 or overlap < 0:
        raise ValueError(f"tile {tile} / overlap {overlap}")
    if size <= tile:
        return [(0, size)]
    tile = max(multiple, tile // multiple * multiple)
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, size - tile, stride))
    last = (size - tile) // multiple * multiple
    if last + tile < size:  # size - tile not on the grid: the last tile ends short of size
        last = size - tile
    if not starts or starts[-1] != last:
        starts.append(last)
    return [(s, s + tile) for s in starts]


def blend_ramp(length: int, before: int, after: int) -> list[float]:
    """1-D weights of a tile: linear ramps over the overlap with the previous (``before``) and
    next (``after``) tile, 1 elsewhere. Ramps run from 1/(n+1) to n/(n+1): never 0, so a pixel
    covered by one tile alone keeps its value, and image borders (before/after = 0) get no ramp.
    """
    w = [1.0] * length
    for i in range(min(before, length)):
        w[i] = min(w[i], (i + 1) / (before + 1))
    for i in range(min(after, length)):
        w[length - 1 - i] = min(w[length - 1 - i], (i + 1) / (after + 1))
    return w


def overlaps(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """For each span, its overlap with the previous and the next span."""
    out = []
    for i, (a, b) in enumerate(spans):
        before = spans[i - 1][1] - a if i > 0 else 0
        after = b - spans[i + 1][0] if i + 1 < len(spans) else 0
        out.append((max(0, before), max(0, after)))
    return out


def blend_mask(h_span: tuple[int, int], w_span: tuple[int, int], h_ov: tuple[int, int],
               w_ov: tuple[int, int], scale: int = 1, device=None):
    """``(H, W)`` float32 weights of one tile, spans and overlaps given at input scale."""
    import torch

    hy = torch.tensor(blend_ramp((h_span[1] - h_span[0]) * scale, h_ov[0] * scale, h_ov[1] * scale))
    wx = torch.tensor(blend_ramp((w_span[1] - w_span[0]) * scale, w_ov[0] * scale, w_ov[1] * scale))
    return (hy[:, None] * wx[None, :]).to(device=device, dtype=torch.float32)


@dataclass(frozen=True)
class Segment:
    """Frames ``[read_start, stop)`` are fed; ``[keep_start, stop)`` are kept (the rest warm up
    the model's state: KV cache, decoder memory, temporal batches)."""

    index: int
    read_start: int
    keep_start: int
    stop: int

    @property
    def kept(self) -> int:
        return self.stop - self.keep_start


def segments(n_frames: int, length: int, warmup: int) -> list[Segment]:
    """Cut ``n_frames`` into segments of ``length`` kept frames, each preceded by up to
    ``warmup`` frames of context. Every frame is kept by exactly one segment."""
    if length <= 0 or warmup < 0:
        raise ValueError(f"length {length} / warmup {warmup}")
    out = []
    for i, start in enumerate(range(0, n_frames, length)):
        out.append(Segment(i, max(0, start - warmup), start, min(n_frames, start + length)))
    return out


def fit_scale(h: int, w: int, target_h: int, target_w: int) -> float:
    return math.sqrt((target_h * target_w) / (h * w))
