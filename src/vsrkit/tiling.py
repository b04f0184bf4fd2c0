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


def tile_grid(size: int, tile: int, overlap: int, multiple: int = 1, *,
              on_grid: bool = False) -> list[tuple[int, int]]:
    """Half-open ``(start, stop)`` spans covering ``[0, size)``.

    Starts are multiples of ``multiple``; neighbours overlap by at least ``overlap`` (when
    ``tile - overlap >= multiple``); the last tile is shifted back so that it ends at ``size``.
    By default it keeps the full ``tile`` length and may start off the grid. ``on_grid=True``
    keeps its start on the grid too (the first multiple at or past ``size - tile``), so it may be
    up to ``multiple - 1`` shorter than ``tile``: an engine that pads its canvas to ``multiple``
    pads that tile back to ``tile``, and each tile's padded canvas is then exactly a window of
    the whole frame's padded canvas (same windows, same noise slice, same padding).
    """
    if tile <= 0 or overlap < 0:
        raise ValueError(f"tile {tile} / overlap {overlap}")
    if size <= tile:
        return [(0, size)]
    tile = max(multiple, tile // multiple * multiple)
    stride = max(multiple, (tile - overlap) // multiple * multiple)
    starts = list(range(0, size - tile, stride))
    if on_grid:
        last = round_up(size - tile, multiple)  # > every start above: they are < size - tile
        return [(s, s + tile) for s in starts] + [(last, size)]
    last = (size - tile) // multiple * multiple
    if last + tile < size:  # size - tile not on the grid: the last tile ends short of size
        last = size - tile
    if not starts or starts[-1] != last:
        starts.append(last)
    return [(s, s + tile) for s in starts]


def balanced_tile(size: int, tile: int, overlap: int, multiple: int = 1) -> int:
    """The shortest tile length (at most ``tile``) whose grid over ``size`` has no more tiles
    than ``tile``'s: the same number of tiles, sized to the canvas, so less is computed twice
    (1080p in 512-px tiles: 1.9x the frame's pixels; balanced: 1.3x)."""
    if size <= tile:
        return size
    n = len(tile_grid(size, tile, overlap, multiple))
    t = max(multiple, round_up(-(-(size + (n - 1) * overlap) // n), multiple))
    while t < tile and len(tile_grid(size, t, overlap, multiple)) > n:
        t += multiple
    return min(t, tile)


def balanced_grid(size: int, tile: int, overlap: int, multiple: int = 1) -> list[tuple[int, int]]:
    """``tile_grid`` with the balanced tile length: what SeedVR2's VAE tiles (and the planner's
    estimate of them) use, so both see the same spans."""
    return tile_grid(size, balanced_tile(size, tile, overlap, multiple), overlap, multiple)


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


def blend_weights(h_spans: list[tuple[int, int]], w_spans: list[tuple[int, int]],
                  scale: int = 1, device=None) -> list:
    """Normalized ``(H, W)`` float32 weights of each tile of the grid ``h_spans x w_spans``
    (row-major), spans at input scale, weights at ``scale`` times it. Over the canvas they sum to
    1 at every pixel. Each is ``blend_mask`` divided by the summed masks: ramps only where tiles
    overlap, and a pixel that one tile alone covers has that tile's mask 1 and sum 1, so its
    weight is exactly 1.0 and the tile's value passes unchanged."""
    import torch

    masks = [blend_mask(ys, xs, yo, xo, scale, device)
             for ys, yo in zip(h_spans, overlaps(h_spans)) for xs, xo in zip(w_spans, overlaps(w_spans))]
    total = torch.zeros(h_spans[-1][1] * scale, w_spans[-1][1] * scale, device=device)
    tiles = [(ys, xs) for ys in h_spans for xs in w_spans]
    for ((y0, y1), (x0, x1)), m in zip(tiles, masks):
        total[y0 * scale:y1 * scale, x0 * scale:x1 * scale] += m
    return [m / total[y0 * scale:y1 * scale, x0 * scale:x1 * scale]
            for ((y0, y1), (x0, x1)), m in zip(tiles, masks)]


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


def fit_scale(h: int, w: int, target_h: int, target_w: int) -> float:
    return math.sqrt((target_h * target_w) / (h * w))


def plan_segments(n_frames: int, *, workers: int = 1, warmup: int = 0, lookahead: int = 0,
                  align: int = 1, length: int | None = None, max_length: int = 600,
                  min_context_ratio: int = 4) -> list[Segment]:
    """Segments of a video for ``workers`` devices. Every frame is kept by exactly one segment;
    a segment reads up to ``warmup`` frames before its first kept frame (down to the ``align``
    grid) and, in the engine, ``lookahead`` frames after its last.

    ``length`` given: segments of that many kept frames. Otherwise the count is a multiple of
    ``workers`` (no device idles for a last odd segment) with at most ``max_length`` kept frames
    each (the unit of resume), but no more segments than keep ``min_context_ratio`` kept frames
    per frame of recomputed context (warm-up + look-ahead); the cuts make every segment's
    work (kept + warm-up + look-ahead frames) equal, since the first segment has no warm-up and
    the last no look-ahead. Cuts lie on the ``align`` grid."""
    if n_frames <= 0 or workers <= 0 or warmup < 0 or lookahead < 0 or align <= 0:
        raise ValueError(f"{n_frames=} {workers=} {warmup=} {lookahead=} {align=}")
    if length is not None:
        starts = list(range(0, n_frames, length))
    else:
        context = warmup + lookahead
        count = workers * math.ceil(math.ceil(n_frames / max_length) / workers)
        if context:
            count = min(count, max(1, n_frames // (min_context_ratio * context)))
        # equal work c per segment: the first keeps c - lookahead, the middle ones
        # c - warmup - lookahead, the last c - warmup; n + (count - 1) * context = count * c
        c = (n_frames + (count - 1) * context) / count
        starts = [0] + [round((c - lookahead + (i - 1) * (c - context)) / align) * align
                        for i in range(1, count)]
        starts = sorted({s for s in starts if 0 <= s < n_frames})
    stops = starts[1:] + [n_frames]
    return [Segment(i, max(0, a - warmup) // align * align, a, b)
            for i, (a, b) in enumerate(zip(starts, stops))]


def context_frames(segs: list[Segment], n_frames: int, lookahead: int) -> int:
    """Frames read beyond the kept ones (each segment's warm-up and look-ahead): the work a
    segmented run does on top of an unbroken one."""
    return sum(s.keep_start - s.read_start + min(lookahead, n_frames - s.stop) for s in segs)
