"""The FlashVSR DiT: a Wan2.1 DiT run as a one-step, streaming, causal model with
locality-constrained sparse attention (LCSA) and a per-block KV cache.

Token layout: latent (16, f, H/8, W/8) -> patches (f, h, w), h = H/16, w = W/16, row-major.
LCSA works on windows of (2, 8, 8) = 128 tokens (2 latent frames x 8x8 patches).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...memory import plain_call
from ...ops.attention import ATTENTION, pick_attention  # noqa: F401 (re-exported)
from ...ops.rope import rope_apply, rope_freqs
from .lcsa import WIN, block_mask, from_windows, local_mask, to_windows  # noqa: F401


@dataclass(frozen=True)
class DiTConfig:
    dim: int
    in_dim: int
    ffn_dim: int
    text_dim: int
    freq_dim: int
    num_layers: int
    out_dim: int
    num_heads: int
    patch: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6

    @classmethod
    def from_state_dict(cls, sd) -> "DiTConfig":
        dim, in_dim, *patch = sd["patch_embedding.weight"].shape  # (D, C_in, pt, ph, pw)
        n = 1 + max(int(k.split(".")[1]) for k in sd if k.startswith("blocks."))
        out = sd["head.head.weight"].shape[0] // math.prod(patch)
        # no tensor holds the head count: Wan's convention is head_dim 128
        return cls(dim=dim, in_dim=in_dim, ffn_dim=sd["blocks.0.ffn.0.weight"].shape[0],
                   text_dim=sd["text_embedding.0.weight"].shape[1],
                   freq_dim=sd["time_embedding.0.weight"].shape[1], num_layers=n,
                   out_dim=out, num_heads=max(1, dim // 128), patch=tuple(patch))


class RMSNorm(nn.Module):
    """Statistics in float32, the weight applied in the input dtype (Wan's order)."""

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype) * self.weight


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps), RMSNorm(dim, eps)

    attention = "reference"

    def forward(self, x, freqs, fhw, cache, topk: int, kv_len: int, local):
        """x (L, D); cache: (K, V) windows of earlier steps or None. Returns out, new cache."""
        f, h, w = fhw
        q = rope_apply(self.norm_q(self.q(x)), freqs, self.heads)
        k = rope_apply(self.norm_k(self.k(x)), freqs, self.heads)
        v = self.v(x)
        qw, kw, vw = (to_windows(t, f, h, w) for t in (q, k, v))
        per_group = qw.shape[0] // (f // WIN[0])  # windows per temporal group
        if cache is not None:
            kw, vw = torch.cat([cache[0], kw]), torch.cat([cache[1], vw])
        mask = block_mask(qw, kw, self.heads, f // WIN[0], topk, local)
        out = ATTENTION[self.attention](qw, kw, vw, mask, self.heads)
        if kw.shape[0] // per_group > kv_len:  # drop exactly one oldest group
            kw, vw = kw[per_group:], vw[per_group:]
        return self.o(from_windows(out, f, h, w)), (kw, vw)


class CrossAttention(nn.Module):
    def __init__(self, dim: int, heads: int, eps: float):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.norm_q, self.norm_k = RMSNorm(dim, eps), RMSNorm(dim, eps)

    def kv(self, ctx):
        return self.norm_k(self.k(ctx)), self.v(ctx)

    def forward(self, x, kv):
        L, D = x.shape
        # 4-D (B, Hd, L, d) so SDPA can take its fused kernels (3-D falls back to math)
        q = self.norm_q(self.q(x)).view(1, L, self.heads, -1).transpose(1, 2)
        k, v = (t.view(1, -1, self.heads, D // self.heads).transpose(1, 2) for t in kv)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.o(out[0].transpose(0, 1).reshape(L, D))


class Block(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        self.self_attn = SelfAttention(c.dim, c.num_heads, c.eps)
        self.cross_attn = CrossAttention(c.dim, c.num_heads, c.eps)
        self.norm1 = nn.LayerNorm(c.dim, eps=c.eps, elementwise_affine=False)
        self.norm2 = nn.LayerNorm(c.dim, eps=c.eps, elementwise_affine=False)
        self.norm3 = nn.LayerNorm(c.dim, eps=c.eps)
        self.ffn = nn.Sequential(nn.Linear(c.dim, c.ffn_dim), nn.GELU(approximate="tanh"),
                                 nn.Linear(c.ffn_dim, c.dim))
        self.modulation = nn.Parameter(torch.zeros(1, 6, c.dim))

    def forward(self, x, t_mod, freqs, fhw, cache, ctx_kv, topk, kv_len, local):
        # 1. Self-attention (modulated, gated), 2. cross-attention, 3. feed-forward
        sh1, sc1, g1, sh2, sc2, g2 = (self.modulation + t_mod).chunk(6, dim=1)  # (1, 1, D) each
        a, cache = self.self_attn(self.norm1(x) * (1 + sc1[0]) + sh1[0], freqs, fhw, cache,
                                  topk, kv_len, local)
        x = x + g1[0] * a
        x = x + self.cross_attn(self.norm3(x), ctx_kv)
        x = x + g2[0] * self.ffn(self.norm2(x) * (1 + sc2[0]) + sh2[0])
        return x, cache


class Head(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        self.norm = nn.LayerNorm(c.dim, eps=c.eps, elementwise_affine=False)
        self.head = nn.Linear(c.dim, c.out_dim * math.prod(c.patch))
        self.modulation = nn.Parameter(torch.zeros(1, 2, c.dim))

    def forward(self, x, t):
        shift, scale = (self.modulation + t[:, None]).chunk(2, dim=1)  # uses t, not t_mod
        return self.head(self.norm(x) * (1 + scale[0]) + shift[0])


class WanDiT(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        self.config = c
        self.patch_embedding = nn.Conv3d(c.in_dim, c.dim, c.patch, stride=c.patch)
        self.text_embedding = nn.Sequential(nn.Linear(c.text_dim, c.dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(c.dim, c.dim))
        self.time_embedding = nn.Sequential(nn.Linear(c.freq_dim, c.dim), nn.SiLU(),
                                            nn.Linear(c.dim, c.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(c.dim, c.dim * 6))
        self.blocks = nn.ModuleList(Block(c) for _ in range(c.num_layers))
        self.head = Head(c)
        self.guard = plain_call  # a session's memory.OOMGuard: a block is rerun, not the step

    def set_attention(self, name: str) -> None:
        if name == "flex":
            from ...ops.attention import _flex_outside_graphs

            _flex_outside_graphs()
        for b in self.blocks:
            b.self_attn.attention = name

    def timestep(self, dtype, device, t: float = 1000.0):
        """t (1, D) and t_mod (1, 6, D) at the one step t = 1000 (sinusoid in float64, cos
        first, then cast)."""
        half = self.config.freq_dim // 2
        pos = torch.tensor([t], dtype=torch.float64, device=device)
        ang = torch.outer(pos, torch.pow(10000, -torch.arange(half, dtype=torch.float64,
                                                              device=device).div(half)))
        emb = torch.cat([torch.cos(ang), torch.sin(ang)], 1).to(dtype)
        te = self.time_embedding(emb)
        return te, self.time_projection(te).unflatten(1, (6, self.config.dim))

    def forward(self, x, lq_tokens, t, t_mod, t_index: torch.Tensor, caches, ctx_kv, topk: int,
                kv_len: int, local):
        """x (16, f, H/8, W/8) noise of this step's latent frames -> velocity, same shape.
        lq_tokens (f*h*w, D) are added before block 0."""
        tok = self.patch_embedding(x[None])[0]  # (D, f, h, w)
        D, f, h, w = tok.shape
        x_ = tok.flatten(1).transpose(0, 1)  # (D, f, h, w) -> (L, D), L = f*h*w
        freqs = rope_freqs(D // self.config.num_heads, t_index, h, w).to(x_.device)
        x_ = x_ + lq_tokens
        for i, blk in enumerate(self.blocks):
            x_, caches[i] = self.guard(blk, x_, t_mod, freqs, (f, h, w), caches[i], ctx_kv[i],
                                       topk, kv_len, local)
        out = self.head(x_, t)  # (L, 64) ordered (pt, ph, pw, c)
        pt, ph, pw = self.config.patch
        out = out.view(f, h, w, pt, ph, pw, -1).permute(6, 0, 3, 1, 4, 2, 5)
        return out.reshape(-1, f * pt, h * ph, w * pw)
