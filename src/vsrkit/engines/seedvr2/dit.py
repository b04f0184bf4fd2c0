"""SeedVR2's MM-DiT (3B and 7B) over a flat token sequence of one clip.

Layout: the video is ``(t, h, w)`` tokens after the 1x2x2 patch, flattened row-major to ``(L, D)``;
the text is ``(L_txt, D)``. Blocks alternate regular and shifted 3D windows (``windows.py``).
Ports ``models/dit_v2`` (3B) and ``models/dit`` (7B) of ByteDance-Seed/SeedVR @673b563.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import DiTConfig
from ...memory import plain_call
from ...ops.attention import VARLEN, Packed
from .windows import window_grid, window_index


class RMSNorm(nn.Module):
    """Statistics in float32 (as diffusers' RMSNorm / apex FusedRMSNorm)."""

    def __init__(self, dim: int, eps: float, affine: bool = True):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim)) if affine else None

    def forward(self, x):
        y = x.float()
        y = (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return y * self.weight if self.weight is not None else y


def rms(x: torch.Tensor, eps: float) -> torch.Tensor:
    y = x.float()
    return (y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype)


class MM(nn.Module):
    """A video module and a text module (``.vid``/``.txt``), or one shared (``.all``); with
    ``vid_only`` the text module is absent (the 3B's last block)."""

    def __init__(self, make, shared: bool, vid_only: bool = False):
        super().__init__()
        if shared:
            self.all = make()
        else:
            self.vid = make()
            if not vid_only:
                self.txt = make()
        self.shared = shared

    @property
    def v(self):
        return self.all if self.shared else self.vid

    @property
    def t(self):
        return self.all if self.shared else self.txt


class Ada(nn.Module):
    """AdaSingle: per-layer learned shift/scale/gate added to the timestep embedding's."""

    def __init__(self, dim: int, layers: tuple[str, ...], gate: bool = True):
        super().__init__()
        for name in layers:
            setattr(self, f"{name}_shift", nn.Parameter(torch.zeros(dim)))
            setattr(self, f"{name}_scale", nn.Parameter(torch.ones(dim)))
            if gate:
                setattr(self, f"{name}_gate", nn.Parameter(torch.zeros(dim)))

    def mod_in(self, x, e, name: str):  # e: (D, 3) shift, scale, gate of the embedding
        return x * (e[:, 1] + getattr(self, f"{name}_scale")) + (e[:, 0] + getattr(self, f"{name}_shift"))

    def mod_out(self, x, e, name: str):
        return x * (e[:, 2] + getattr(self, f"{name}_gate"))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj_in_gate = nn.Linear(dim, hidden, bias=False)
        self.proj_out = nn.Linear(hidden, dim, bias=False)
        self.proj_in = nn.Linear(dim, hidden, bias=False)

    def forward(self, x):
        return self.proj_out(F.silu(self.proj_in_gate(x)) * self.proj_in(x))


class GeluMLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.proj_in = nn.Linear(dim, hidden)
        self.proj_out = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.proj_out(F.gelu(self.proj_in(x), approximate="tanh"))


# -- RoPE -------------------------------------------------------------------------------------


def rope_inv_freqs(c: DiTConfig) -> torch.Tensor:
    """Per-axis frequencies in float32, always computed (never read from a checkpoint).
    3B: rotary-embedding-torch 'lang' (theta 10000); 7B: 'pixel' (max_freq 256)."""
    d = c.rope_dim // 3
    if c.arch == "3b":
        return 1.0 / (10000 ** (torch.arange(0, d, 2)[: d // 2].float() / d))
    return torch.linspace(1.0, 256 / 2, d // 2) * math.pi


def _angles(pos: torch.Tensor, inv: torch.Tensor) -> torch.Tensor:
    return (pos.float()[:, None] * inv[None, :]).repeat_interleave(2, dim=-1)  # (n, 2f), pairs


def video_angles(c: DiTConfig, inv, shape: tuple[int, int, int], txt_len: int) -> torch.Tensor:
    """(t*h*w, 6f) rotation angles of one window, [t | h | w], positions local to the window.
    3B: arange positions, time starting at the text length; 7B: linspace(-1, 1) per extent."""
    t, h, w = shape
    if c.arch == "3b":
        pt, ph, pw = (torch.arange(txt_len, txt_len + t), torch.arange(h), torch.arange(w))
    else:
        pt, ph, pw = (torch.linspace(-1, 1, t), torch.linspace(-1, 1, h), torch.linspace(-1, 1, w))
    at, ah, aw = _angles(pt, inv), _angles(ph, inv), _angles(pw, inv)
    f2 = at.shape[-1]
    out = torch.cat([at[:, None, None].expand(t, h, w, f2), ah[None, :, None].expand(t, h, w, f2),
                     aw[None, None, :].expand(t, h, w, f2)], dim=-1)
    return out.reshape(t * h * w, 3 * f2)


def text_angles(inv, txt_len: int) -> torch.Tensor:
    """3B text: position p on all three axes."""
    return _angles(torch.arange(txt_len), inv).repeat(1, 3)


def rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the first ``cos.shape[-1]`` dims of x (..., L, heads, d) in adjacent pairs, in
    float32; cos/sin (L, r)."""
    r = cos.shape[-1]
    xr = x[..., :r].float()
    x1, x2 = xr.unflatten(-1, (-1, 2)).unbind(-1)
    rot = torch.stack((-x2, x1), dim=-1).flatten(-2)
    y = xr * cos[:, None] + rot * sin[:, None]
    return torch.cat([y.to(x.dtype), x[..., r:]], dim=-1)


# -- windows plan (per grid, reused by every block) -----------------------------------------------


@dataclass
class Windows:
    """One window partition packed for varlen attention. Rows index ``cat([vid (L), txt (Lt)])``:
    each window's video tokens, then its own copy of the text; windows of one shape are packed
    together (so the batched backend sees views)."""

    index: torch.Tensor  # (N,) row -> token of cat([vid, txt])
    cos: torch.Tensor  # (N, r) float32 rotation of each row (text rows: 3B text rope, 7B none)
    sin: torch.Tensor
    packed: Packed
    vid_rows: torch.Tensor  # (L,) packed row of each video token (each appears in one window)
    txt_rows: torch.Tensor  # (n_windows, Lt) packed rows of each window's text copy


@dataclass
class Layout:
    """Token grid and its two window partitions (False: regular, True: shifted)."""

    grid: tuple[int, int, int]
    windows: dict[bool, Windows]


def make_layout(c: DiTConfig, grid: tuple[int, int, int], txt_len: int, device) -> Layout:
    inv = rope_inv_freqs(c)  # float32, computed
    r = 3 * 2 * inv.shape[0]
    L = grid[0] * grid[1] * grid[2]
    txt_idx = torch.arange(L, L + txt_len)
    if c.arch == "3b":  # mmrope3d: text position p on all three axes, in every window
        t_ang = text_angles(inv, txt_len)
        t_cos, t_sin = t_ang.cos(), t_ang.sin()
    else:  # pixel rope rotates the video only: identity rows (x*1 + rot*0 == x exactly)
        t_cos, t_sin = torch.ones(txt_len, r), torch.zeros(txt_len, r)
    out = {}
    for shifted in (False, True):
        wins = window_grid(grid, c.windows, shifted)
        by_shape: dict[tuple, list[torch.Tensor]] = {}
        for win, ix in zip(wins, window_index(grid, wins)):
            by_shape.setdefault(tuple(b - a for a, b in win), []).append(ix)
        index, cos, sin, lengths, txt_rows = [], [], [], [], []
        row = 0
        for shape, ixs in by_shape.items():
            ang = video_angles(c, inv, shape, txt_len)  # (Lw, r), positions local to the window
            v_cos, v_sin = ang.cos(), ang.sin()
            for ix in ixs:
                index += [ix, txt_idx]
                cos += [v_cos, t_cos]
                sin += [v_sin, t_sin]
                lengths.append(ix.numel() + txt_len)
                txt_rows.append(torch.arange(row + ix.numel(), row + ix.numel() + txt_len))
                row += ix.numel() + txt_len
        index = torch.cat(index)
        is_vid = index < L
        vid_rows = torch.empty(L, dtype=torch.long)
        vid_rows[index[is_vid]] = torch.nonzero(is_vid)[:, 0]
        out[shifted] = Windows(index.to(device), torch.cat(cos).to(device), torch.cat(sin).to(device),
                               Packed(lengths, device), vid_rows.to(device),
                               torch.stack(txt_rows).to(device))
    return Layout(grid, out)


# -- blocks ------------------------------------------------------------------------------------


class WindowAttention(nn.Module):
    def __init__(self, c: DiTConfig, shared: bool, shifted: bool):
        super().__init__()
        self.c, self.shifted = c, shifted
        inner = c.heads * c.head_dim
        self.proj_qkv = MM(lambda: nn.Linear(c.vid_dim, 3 * inner, bias=False), shared)
        self.proj_out = MM(lambda: nn.Linear(inner, c.vid_dim), shared)
        self.norm_q = MM(lambda: RMSNorm(c.head_dim, c.norm_eps), shared)
        self.norm_k = MM(lambda: RMSNorm(c.head_dim, c.norm_eps), shared)
        self.attention = "reference"  # a backend of ops.attention.VARLEN

    def forward(self, vid, txt, lay: Layout):
        """vid (L, D), txt (Lt, D) -> their attention outputs, (L, D) and (Lt, D)."""
        H, d = self.c.heads, self.c.head_dim
        L, lt = vid.shape[0], txt.shape[0]
        vq, vk, vv = self.proj_qkv.v(vid).view(L, 3, H, d).unbind(1)  # (L, H, d) each
        tq, tk, tv = self.proj_qkv.t(txt).view(lt, 3, H, d).unbind(1)  # (Lt, H, d)
        w = lay.windows[self.shifted]
        # packed windows: (N, H, d) rows, N = L + n_windows * Lt
        q = torch.cat([self.norm_q.v(vq), self.norm_q.t(tq)])[w.index]
        k = torch.cat([self.norm_k.v(vk), self.norm_k.t(tk)])[w.index]
        v = torch.cat([vv, tv])[w.index]
        q, k = rope(q, w.cos, w.sin), rope(k, w.cos, w.sin)
        o = VARLEN[self.attention](q, k, v, w.packed).reshape(-1, H * d)
        del q, k, v
        vid_out = o[w.vid_rows]
        # the text copies averaged over the windows, in float32
        txt_out = (o[w.txt_rows].float().sum(0) / w.txt_rows.shape[0]).to(txt.dtype)
        return self.proj_out.v(vid_out), self.proj_out.t(txt_out)


class Block(nn.Module):
    def __init__(self, c: DiTConfig, i: int):
        super().__init__()
        shared = i >= c.mm_layers
        # 3B: the last block updates only the video (no text MLP/modulation; its text still
        # serves as attention keys, normed but not modulated)
        self.vid_only = c.arch == "3b" and i == c.num_layers - 1
        self.eps = c.norm_eps
        self.attn = WindowAttention(c, shared, shifted=i % 2 == 1)
        mlp = (lambda: SwiGLU(c.vid_dim, c.mlp_hidden)) if c.arch == "3b" else \
            (lambda: GeluMLP(c.vid_dim, c.mlp_hidden))
        self.mlp = MM(mlp, shared, self.vid_only)
        self.ada = MM(lambda: Ada(c.vid_dim, ("attn", "mlp")), shared, self.vid_only)

    def forward(self, vid, txt, e, lay: Layout):
        """e: (D, 2, 3) the timestep embedding as (dim, layer [attn, mlp], [shift, scale, gate])."""
        # 1. Windowed self-attention over video + text
        va = self.ada.v.mod_in(rms(vid, self.eps), e[:, 0], "attn")
        ta = rms(txt, self.eps)
        if not self.vid_only:
            ta = self.ada.t.mod_in(ta, e[:, 0], "attn")
        va, ta = self.attn(va, ta, lay)
        vid = vid + self.ada.v.mod_out(va, e[:, 0], "attn")
        txt = txt + (ta if self.vid_only else self.ada.t.mod_out(ta, e[:, 0], "attn"))
        # 2. Feed-forward
        vm = self.mlp.v(self.ada.v.mod_in(rms(vid, self.eps), e[:, 1], "mlp"))
        vid = vid + self.ada.v.mod_out(vm, e[:, 1], "mlp")
        if not self.vid_only:
            tm = self.mlp.t(self.ada.t.mod_in(rms(txt, self.eps), e[:, 1], "mlp"))
            txt = txt + self.ada.t.mod_out(tm, e[:, 1], "mlp")
        return vid, txt


class PatchIn(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        self.proj = nn.Linear(c.in_channels * 4, c.vid_dim)


class PatchOut(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        self.proj = nn.Linear(c.vid_dim, c.out_channels * 4)


class TimeEmbedding(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        self.proj_in = nn.Linear(c.hidden_act_in, c.vid_dim)
        self.proj_hid = nn.Linear(c.vid_dim, c.vid_dim)
        self.proj_out = nn.Linear(c.vid_dim, c.emb_dim)

    def forward(self, t: float, device, dtype):
        # diffusers get_timestep_embedding(flip_sin_to_cos=False, downscale_freq_shift=0)
        half = self.proj_in.in_features // 2
        freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
        arg = torch.tensor([float(t)])[:, None] * freqs[None]
        x = torch.cat([arg.sin(), arg.cos()], -1).to(device=device, dtype=dtype)
        return self.proj_out(F.silu(self.proj_hid(F.silu(self.proj_in(x)))))


class NaDiT(nn.Module):
    def __init__(self, c: DiTConfig):
        super().__init__()
        self.c = c
        self.vid_in = PatchIn(c)
        self.txt_in = nn.Linear(c.txt_in_dim, c.vid_dim)
        self.emb_in = TimeEmbedding(c)
        self.blocks = nn.ModuleList(Block(c, i) for i in range(c.num_layers))
        self.guard = plain_call  # a session's memory.OOMGuard: a block is run again, not all
        if c.arch == "3b":
            self.vid_out_norm = RMSNorm(c.vid_dim, c.norm_eps)
            self.vid_out_ada = Ada(c.vid_dim, ("out",), gate=False)
        self.vid_out = PatchOut(c)

    def set_attention(self, name: str) -> None:
        for b in self.blocks:
            b.attn.attention = name

    def embed_text(self, txt: torch.Tensor) -> torch.Tensor:
        return self.txt_in(txt)

    def forward(self, x: torch.Tensor, txt: torch.Tensor, timestep: float = 1000.0,
                lay: Layout | None = None) -> torch.Tensor:
        """x: (t, H, W, 33) latent + condition, channels last; txt: (L_txt, D) embedded text.
        Returns the (t, H, W, 16) prediction (v)."""
        c = self.c
        t, H, W, C = x.shape
        assert C == c.in_channels and H % 2 == 0 and W % 2 == 0, f"{x.shape=}"
        grid = (t, H // 2, W // 2)
        if lay is None or lay.grid != grid:
            lay = make_layout(c, grid, txt.shape[0], x.device)
        # (t, H, W, C) -> (t, h, w, (2 2 C)) -> (L, D)
        v = x.view(t, H // 2, 2, W // 2, 2, C).permute(0, 1, 3, 2, 4, 5).reshape(-1, 4 * C)
        vid = self.vid_in.proj(v)
        e = self.emb_in(timestep, x.device, vid.dtype)[0].view(c.vid_dim, 2, 3)
        for block in self.blocks:
            vid, txt = self.guard(block, vid, txt, e, lay)
        if c.arch == "3b":
            # the official output modulation reads the cached 'attn' slice of the embedding
            # (AdaSingle's cache key repeats the block's layer index 0): shift/scale of attn
            vid = self.vid_out_ada.mod_in(self.vid_out_norm(vid), e[:, 0], "out")
        out = self.vid_out.proj(vid)  # (L, 4*16)
        out = out.view(t, H // 2, W // 2, 2, 2, c.out_channels).permute(0, 1, 3, 2, 4, 5)
        return out.reshape(t, H, W, c.out_channels)
