"""Rotary position embedding (Wan's 3-D RoPE) computed for any position: angles in float64
from the positions themselves, never looked up in a fixed table (the official 1024-entry table
crashes past ~4100 frames). Below 1024 the values equal the official table's bit for bit."""

from __future__ import annotations

import torch


def rope_freqs(head_dim: int, t: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """``(f*h*w, head_dim/2, 2)`` float64 rotations (cos, sin) for temporal positions ``t``
    (absolute latent indices, any size: computed, not looked up) and spatial 0..h-1, 0..w-1.
    Real pairs, not complex128: inductor generates no code for complex operators, so a
    compiled block fell back to eager kernels around every rotation (this runs outside the
    compiled blocks, once per step)."""
    dims = (head_dim - 2 * (head_dim // 3), head_dim // 3, head_dim // 3)

    def table(d, pos):
        theta = 1.0 / (10000.0 ** (torch.arange(0, d, 2)[: d // 2].double() / d))
        ang = torch.outer(pos.double(), theta)
        # polar, not cos/sin: its values are the official table's (cos/sin differ in ulps)
        return torch.view_as_real(torch.polar(torch.ones_like(ang), ang))

    ft, fh, fw = table(dims[0], t), table(dims[1], torch.arange(h)), table(dims[2], torch.arange(w))
    f = len(t)
    return torch.cat([ft.view(f, 1, 1, -1, 2).expand(f, h, w, -1, 2),
                      fh.view(1, h, 1, -1, 2).expand(f, h, w, -1, 2),
                      fw.view(1, 1, w, -1, 2).expand(f, h, w, -1, 2)], -2).reshape(f * h * w, -1, 2)


def rope_apply(x: torch.Tensor, freqs: torch.Tensor, heads: int) -> torch.Tensor:
    """x (L, D) -> rotated in adjacent pairs per head, in float64 (as the reference): the
    complex product (a + ib)(c + is) written out, each product rounded as complex128's is."""
    L, D = x.shape
    xp = x.double().reshape(L, heads, -1, 2)
    a, b = xp[..., 0], xp[..., 1]
    c, s = freqs[:, None, :, 0], freqs[:, None, :, 1]
    return torch.stack([a * c - b * s, a * s + b * c], -1).reshape(L, D).to(x.dtype)
