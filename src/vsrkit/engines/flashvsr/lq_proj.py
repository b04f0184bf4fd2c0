"""The LQ projector: the 4x-upsampled LQ video, 4 frames at a time, into DiT-width tokens
added before block 0. v1 (Buffer) and v1.1 (Causal) share keys and differ only in which two
frames of temporal context each causal conv sees."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...memory import plain_call

CONTEXT = 2  # frames of temporal left context of each causal conv


class RMSNormC(nn.Module):
    """Wan's channel RMS norm: F.normalize over channels * sqrt(C) * gamma."""

    def __init__(self, c: int):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(c, 1, 1, 1))
        self.scale = c ** 0.5

    def forward(self, x):
        return F.normalize(x, dim=1) * self.scale * self.gamma


class CausalConv3d(nn.Conv3d):
    """Kernel (4, 3, 3), stride (2, 1, 1): 2 frames of left context (the cache, else the
    first frame replicated) and 1 pixel of replicate padding in space."""

    def forward(self, x, context=None):
        pad_t = 2
        if context is not None:
            x = torch.cat([context, x], dim=2)
            pad_t -= context.shape[2]
        x = F.pad(x, (1, 1, 1, 1, pad_t, 0), mode="replicate")
        return super().forward(x)


def pixel_unshuffle_3d(x: torch.Tensor, ff: int, hh: int, ww: int) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, C*ff*hh*ww, F/ff, H/hh, W/ww), channel index (c, ff, hh, ww)."""
    B, C, Fr, H, W = x.shape
    x = x.view(B, C, Fr // ff, ff, H // hh, hh, W // ww, ww).permute(0, 1, 3, 5, 7, 2, 4, 6)
    return x.reshape(B, C * ff * hh * ww, Fr // ff, H // hh, W // ww)


class LQProjector(nn.Module):
    def __init__(self, in_ch: int, hidden1: int, hidden2: int, out_dim: int, causal: bool):
        super().__init__()
        self.causal = causal
        self.conv1 = CausalConv3d(in_ch * 256, hidden1, (4, 3, 3), stride=(2, 1, 1))
        self.norm1 = RMSNormC(hidden1)
        self.conv2 = CausalConv3d(hidden1, hidden2, (4, 3, 3), stride=(2, 1, 1))
        self.norm2 = RMSNormC(hidden2)
        self.linear_layers = nn.ModuleList([nn.Linear(hidden2, out_dim)])
        self.guard = plain_call  # a session's memory.OOMGuard around each convolution
        self.reset()

    @classmethod
    def from_state_dict(cls, sd, causal: bool) -> "LQProjector":
        h1, c_in = sd["conv1.weight"].shape[:2]
        h2 = sd["conv2.weight"].shape[0]
        out = sd["linear_layers.0.weight"].shape[0]
        return cls(c_in // 256, h1, h2, out, causal)

    def reset(self) -> None:
        self.cache1 = self.cache2 = None
        self.primed = False

    def _conv(self, conv, x, which: str):
        """v1.1: context = the previous clip's last frames; v1: the current clip's own."""
        last = x[:, :, -CONTEXT:].clone()
        y = self.guard(conv, x, getattr(self, which) if self.causal else last)
        setattr(self, which, last)  # after the conv: a rerun (memory.OOMGuard) sees the same
        return y

    def push(self, clip: torch.Tensor) -> torch.Tensor | None:
        """clip (1, 3, 4, H, W) in [-1, 1] (the first call: (1, 3, 1, H, W), frame 0, which is
        replicated to 4 frames and only primes the caches). Returns (h*w, D) tokens or None."""
        if not self.primed:
            clip = torch.cat([clip[:, :, :1].repeat(1, 1, 3, 1, 1), clip], dim=2)
        x = pixel_unshuffle_3d(clip, 1, 16, 16)
        x = F.silu(self.norm1(self._conv(self.conv1, x, "cache1")))  # (1, h1, 2, h, w)
        if not self.primed:
            self.cache2 = x[:, :, -CONTEXT:].clone()
            self.primed = True
            return None
        x = F.silu(self.norm2(self._conv(self.conv2, x, "cache2")))  # (1, h2, 1, h, w)
        return self.linear_layers[0](x.flatten(2).transpose(1, 2)[0])  # (h*w, D)
