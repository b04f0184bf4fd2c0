"""TCDecoder: a widened, deepened TAEHV decoder conditioned on the LQ frames, run strictly
frame by frame with per-MemBlock memory (O(1) memory in time). Module indices are the
checkpoint's (``decoder.<i>``)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...memory import plain_call


def conv3(cin, cout, bias=True):
    return nn.Conv2d(cin, cout, 3, padding=1, bias=bias)


class Clamp(nn.Module):
    def forward(self, x):
        return torch.tanh(x / 3) * 3


class MemBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Sequential(conv3(2 * c, c), nn.ReLU(), conv3(c, c), nn.ReLU(), conv3(c, c))

    def forward(self, x, past):
        return F.relu(self.conv(torch.cat([x, past], 1)) + x)


class TGrow(nn.Module):
    """1x1 conv to stride*C channels, split into `stride` consecutive frames (earlier first)."""

    def __init__(self, c: int, stride: int):
        super().__init__()
        self.stride = stride
        self.conv = nn.Conv2d(c, c * stride, 1, bias=False)

    def forward(self, x):
        return list(self.conv(x).chunk(self.stride, 1))


class IdentityConv(nn.Conv2d):
    def __init__(self, c):
        super().__init__(c, c, 3, padding=1, bias=False)


def build_decoder(ch: list[int], latent: int, cond: int) -> nn.Sequential:
    c0, c1, c2, c3 = ch
    up = lambda: nn.Upsample(scale_factor=2)  # noqa: E731
    return nn.Sequential(
        Clamp(), conv3(latent + cond, c0), nn.ReLU(), IdentityConv(c0), nn.ReLU(),
        MemBlock(c0), MemBlock(c0), MemBlock(c0), up(), TGrow(c0, 1), conv3(c0, c1, bias=False),
        MemBlock(c1), MemBlock(c1), MemBlock(c1), up(), TGrow(c1, 2), conv3(c1, c2, bias=False),
        MemBlock(c2), MemBlock(c2), MemBlock(c2), up(), TGrow(c2, 2), conv3(c2, c3, bias=False),
        nn.ReLU(), IdentityConv(c3), nn.ReLU(), conv3(c3, 3))


class TCDecoder(nn.Module):
    FRAMES_TO_TRIM = 3  # 2 temporal x2 stages: the first latent's 3 leading frames are dropped
    needs_lq = True  # conditioned on the LQ frames (decoder.FrameDecoder)

    def __init__(self, ch: list[int], latent: int = 16, cond: int = 768):
        super().__init__()
        self.decoder = build_decoder(ch, latent, cond)
        self.guard = plain_call  # a session's memory.OOMGuard around each layer
        self.reset()

    @classmethod
    def from_state_dict(cls, sd) -> "TCDecoder":
        w1 = sd["decoder.1.weight"]  # (c0, latent + cond, 3, 3)
        ch = [w1.shape[0], sd["decoder.10.weight"].shape[0], sd["decoder.16.weight"].shape[0],
              sd["decoder.22.weight"].shape[0]]
        return cls(ch, latent=16, cond=w1.shape[1] - 16)

    def reset(self) -> None:
        self.mem: list[torch.Tensor | None] = [None] * len(self.decoder)
        self.first = True

    def _run(self, x: torch.Tensor, i: int, out: list) -> None:
        """Depth first through the layers from index i (TGrow fans out frames in order)."""
        while i < len(self.decoder):
            b = self.decoder[i]
            # each layer call changes no state before it returns (the memory is written
            # after), so the guard can run it again
            if isinstance(b, MemBlock):
                past = self.mem[i] if self.mem[i] is not None else torch.zeros_like(x)
                y = self.guard(b, x, past)
                self.mem[i], x = x, y
            elif isinstance(b, TGrow):
                for xt in self.guard(b, x):
                    self._run(xt, i + 1, out)
                return
            else:
                x = self.guard(b, x)
            i += 1
        out.append(x)

    def decode(self, latents: torch.Tensor, lq: torch.Tensor) -> torch.Tensor:
        """latents (T, 16, h, w); lq (1, 3, 4T, 8h, 8w) in [-1, 1], aligned groups of 4.
        Returns (4T or 4T-3 on the first call, 3, 8h, 8w) in [-1, 1]."""
        T = latents.shape[0]
        B, C, Fr, H, W = lq.shape
        cond = lq.view(B, C, T, 4, H // 8, 8, W // 8, 8).permute(0, 2, 1, 3, 5, 7, 4, 6)
        cond = cond.reshape(T, C * 4 * 64, H // 8, W // 8)  # channel ((c*4 + ft)*8 + dy)*8 + dx
        out: list = []
        for t in range(T):
            self._run(torch.cat([cond[t:t + 1], latents[t:t + 1]], 1), 0, out)
        frames = torch.cat(out)
        if self.first:
            frames = frames[self.FRAMES_TO_TRIM:]
            self.first = False
        return frames * 2 - 1
