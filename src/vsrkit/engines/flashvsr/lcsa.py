"""Locality-constrained sparse attention (LCSA), the block selection as the official kernel sees
it: tokens cut into (2, 8, 8) windows of 128, window pairs scored on pooled means, a local box
on the window grid, and a global top-k per head and query temporal group."""

from __future__ import annotations

import math

import torch

WIN = (2, 8, 8)  # (frames, rows, cols) of one LCSA window: 128 tokens


def to_windows(x: torch.Tensor, f: int, h: int, w: int) -> torch.Tensor:
    """(f*h*w, D) -> (n_windows, 128, D), windows (tf, ty, tx) row-major."""
    D = x.shape[-1]
    wf, wh, ww = WIN
    x = x.view(f // wf, wf, h // wh, wh, w // ww, ww, D).permute(0, 2, 4, 1, 3, 5, 6)
    return x.reshape(-1, wf * wh * ww, D)


def from_windows(x: torch.Tensor, f: int, h: int, w: int) -> torch.Tensor:
    D = x.shape[-1]
    wf, wh, ww = WIN
    x = x.view(f // wf, h // wh, w // ww, wf, wh, ww, D).permute(0, 3, 1, 4, 2, 5, 6)
    return x.reshape(f * h * w, D)


def local_mask(bh: int, bw: int, r: int, device) -> torch.Tensor:
    """(bh*bw, bh*bw) bool: key window (r', c') is local to query (r, c) iff it lies in the
    R x R box starting at (r - R//2, c - R//2), not clamped at the borders."""
    rr, cc = torch.meshgrid(torch.arange(bh, device=device), torch.arange(bw, device=device),
                            indexing="ij")
    rr, cc = rr.reshape(-1), cc.reshape(-1)
    r0, c0 = rr - r // 2, cc - r // 2
    in_r = (rr[None, :] >= r0[:, None]) & (rr[None, :] <= r0[:, None] + r - 1)
    in_c = (cc[None, :] >= c0[:, None]) & (cc[None, :] <= c0[:, None] + r - 1)
    return in_r & in_c


def block_mask(qw: torch.Tensor, kw: torch.Tensor, heads: int, groups: int, topk: int,
               local: torch.Tensor) -> torch.Tensor:
    """The official draft mask: (heads, nq, nk) bool of key windows each query window uses.
    Pooled window means score the pairs; softmax over local keys; per head and query temporal
    group a global top-k (strict ``>`` the (k+1)-th largest)."""
    qp = qw.mean(1).view(qw.shape[0], heads, -1).permute(1, 0, 2)  # (Hd, nq, d)
    kp = kw.mean(1).view(kw.shape[0], heads, -1).permute(1, 0, 2)  # (Hd, nk, d)
    scores = torch.einsum("hld,hmd->hlm", qp, kp) / math.sqrt(qp.shape[-1])
    nq, nk = scores.shape[1:]
    lm = local.repeat(nq // local.shape[0], nk // local.shape[1])
    bias = torch.zeros(lm.shape, dtype=torch.float32, device=lm.device).masked_fill(~lm, -math.inf)
    attn = torch.softmax(scores + bias, dim=-1)  # float32
    flat = attn.reshape(heads * groups, -1)  # (Hd*groups, P*nk)
    k = min(flat.shape[1] - 1, topk)
    th = torch.topk(flat, k + 1, dim=1).values[:, -1:]
    return (flat > th).reshape(heads, nq, nk)
