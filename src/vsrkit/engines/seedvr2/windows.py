"""SeedVR2's 3D attention windows: the window grid (the attention itself runs through the
shared varlen dispatch, ``ops.attention``).

The grid follows the official ``make_720Pwindows_bysize`` / ``make_shifted_720Pwindows_bysize``
(``models/dit_v2/window.py``): window sizes are set as if the frame were 720p-sized (45x80 tokens)
split into ``num_windows`` (4, 3, 3), so they depend on the aspect ratio, not on a token count;
border windows may be smaller. The text tokens join every window and their outputs are averaged
over the windows (``na.repeat_concat_idx``).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

Span = tuple[int, int]
Window = tuple[Span, Span, Span]  # (t, h, w) half-open spans on the token grid

REF_TOKENS_HW = 45 * 80  # a 720p frame in tokens (8x VAE, 2x2 patch)
MAX_T = 30  # temporal windows are sized as if the clip had at most 30 latent frames


def window_sizes(t: int, h: int, w: int, num: Sequence[int]) -> tuple[int, int, int]:
    scale = math.sqrt(REF_TOKENS_HW / (h * w))
    rh, rw = round(h * scale), round(w * scale)  # Python round, as the reference
    return math.ceil(min(t, MAX_T) / num[0]), math.ceil(rh / num[1]), math.ceil(rw / num[2])


def _spans(n: int, size: int, shifted: bool) -> list[Span]:
    if not shifted:
        return [(i * size, min((i + 1) * size, n)) for i in range(math.ceil(n / size))
                if min((i + 1) * size, n) > i * size]
    s = 0.5 if size < n else 0  # half a window, only where the axis has several
    count = math.ceil((n - s) / size) + 1 if s > 0 else 1
    out = []
    for i in range(count):
        a, b = max(int((i - s) * size), 0), min(int((i - s + 1) * size), n)
        if b > a:
            out.append((a, b))
    return out


def window_grid(size: tuple[int, int, int], num: Sequence[int] = (4, 3, 3),
                shifted: bool = False) -> list[Window]:
    """Windows of a ``(t, h, w)`` token grid, in the reference order (w outer, t inner)."""
    t, h, w = size
    wt, wh, ww = window_sizes(t, h, w, num)
    ts, hs, ws = _spans(t, wt, shifted), _spans(h, wh, shifted), _spans(w, ww, shifted)
    return [(a, b, c) for c in ws for b in hs for a in ts]


def window_index(size: tuple[int, int, int], windows: list[Window], device=None) -> list[torch.Tensor]:
    """Flat token indices (row-major t, h, w) of each window, each in the window's own order."""
    t, h, w = size
    grid = torch.arange(t * h * w, device=device).view(t, h, w)
    return [grid[a[0]:a[1], b[0]:b[1], c[0]:c[1]].reshape(-1) for a, b, c in windows]
