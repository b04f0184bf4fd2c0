"""SeedVR2's causal video VAE (official ``models/video_vae_v3``: 8x space, 4x time, 16 channels).

Every temporal operation is causal: 3D convs see the current and earlier frames only (the first
frame is repeated before the clip), norms and the mid-block attention work per frame. So the
video can be encoded and decoded in time chunks carrying each conv's last input frames
(``Stream``), with results equal to one pass; the official code does the same ("causal slicing").
Spatial tiles (``tiles=``) are an approximation (GroupNorm statistics and conv borders differ
per tile) blended with linear ramps.

Layout: ``(B, C, T, H, W)`` throughout.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ... import tiling
from ...ops.conv import conv3d_as_conv2d
from .config import VAEConfig


class Stream:
    """Per-pass causal memory: each conv's last input frames; ``first`` until a chunk ran."""

    def __init__(self):
        self.memory: dict[int, torch.Tensor] = {}
        self.first = True


class CausalConv3d(nn.Conv3d):
    """Zero padding in space; in time, ``kt - 1`` frames of history: copies of the first frame
    at the start of a stream, the previous chunk's last input frames after."""

    def __init__(self, cin: int, cout: int, kernel=3, stride=1, pad_hw: int | None = None):
        k = (kernel,) * 3 if isinstance(kernel, int) else tuple(kernel)
        s = (stride,) * 3 if isinstance(stride, int) else tuple(stride)
        p = k[1] // 2 if pad_hw is None else pad_hw
        super().__init__(cin, cout, k, s, padding=(0, p, p))

    def forward(self, x: torch.Tensor, stream: Stream | None = None) -> torch.Tensor:
        kt, st = self.kernel_size[0], self.stride[0]
        if kt > 1:
            prev = None if stream is None else stream.memory.get(id(self))
            if prev is None:
                prev = x[:, :, :1].expand(-1, -1, kt - 1, -1, -1)
            x = torch.cat([prev.to(x.dtype), x], dim=2)
            if stream is not None:  # the frames the next chunk's first window needs
                stream.memory[id(self)] = x[:, :, x.shape[2] - (kt - st):]
        if x.device.type == "cpu" and kt > 1 and x.shape[0] == 1:
            # about 3x faster than PyTorch's CPU conv3d (same result up to summation order)
            return conv3d_as_conv2d(x, self.weight, self.bias, self.stride, self.padding)
        return super().forward(x)


def frame_norm(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """GroupNorm of each frame on its own (the official ``causal_norm_wrapper``)."""
    b, c, t, h, w = x.shape
    y = norm(x.transpose(1, 2).reshape(b * t, c, h, w))
    return y.view(b, t, c, h, w).transpose(1, 2)


class Resnet(nn.Module):
    def __init__(self, cin: int, cout: int, cfg: VAEConfig):
        super().__init__()
        self.norm1 = nn.GroupNorm(cfg.norm_groups, cin, eps=cfg.eps)
        self.conv1 = CausalConv3d(cin, cout, 3)
        self.norm2 = nn.GroupNorm(cfg.norm_groups, cout, eps=cfg.eps)
        self.conv2 = CausalConv3d(cout, cout, 3)
        self.conv_shortcut = CausalConv3d(cin, cout, 1) if cin != cout else None

    def forward(self, x, s):
        h = self.conv1(F.silu(frame_norm(self.norm1, x)), s)
        h = self.conv2(F.silu(frame_norm(self.norm2, h)), s)
        return (x if self.conv_shortcut is None else self.conv_shortcut(x, s)) + h


class FrameAttention(nn.Module):
    """Single-head self-attention over each frame's positions (diffusers ``Attention`` with
    group norm and a residual, as the official mid-block)."""

    def __init__(self, c: int, cfg: VAEConfig):
        super().__init__()
        self.group_norm = nn.GroupNorm(cfg.norm_groups, c, eps=cfg.eps)
        self.to_q, self.to_k, self.to_v = nn.Linear(c, c), nn.Linear(c, c), nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x):
        b, c, t, h, w = x.shape
        y = x.transpose(1, 2).reshape(b * t, c, h, w)
        n = self.group_norm(y).flatten(2).transpose(1, 2)  # (B*T, HW, C)
        q, k, v = self.to_q(n), self.to_k(n), self.to_v(n)
        o = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        o = self.to_out[0](o).transpose(1, 2).reshape(b * t, c, h, w) + y
        return o.view(b, t, c, h, w).transpose(1, 2)


class MidBlock(nn.Module):
    def __init__(self, c: int, cfg: VAEConfig):
        super().__init__()
        self.attentions = nn.ModuleList([FrameAttention(c, cfg)])
        self.resnets = nn.ModuleList([Resnet(c, c, cfg), Resnet(c, c, cfg)])

    def forward(self, x, s):
        x = self.resnets[0](x, s)
        return self.resnets[1](self.attentions[0](x), s)


class Downsample(nn.Module):
    def __init__(self, c: int, temporal: bool):
        super().__init__()
        kt = 3 if temporal else 1
        self.conv = CausalConv3d(c, c, (kt, 3, 3), (2 if temporal else 1, 2, 2), pad_hw=0)

    def forward(self, x, s):
        return self.conv(F.pad(x, (0, 1, 0, 1)), s)  # right/bottom zero pad, then stride 2


class Upsample(nn.Module):
    """Sub-pixel upsampling (a 1x1x1 conv to r_h*r_w*r_t copies, then reordered), then a conv.
    In time the first frame is not doubled at the start of a stream (``remove_head``)."""

    def __init__(self, c: int, temporal: bool):
        super().__init__()
        self.rt = 2 if temporal else 1
        self.upscale_conv = nn.Conv3d(c, c * 4 * self.rt, 1)
        self.conv = CausalConv3d(c, c, 3)

    def forward(self, x, s):
        b, c, t, h, w = x.shape
        y = self.upscale_conv(x).view(b, 2, 2, self.rt, c, t, h, w)  # channels (x y z c)
        y = y.permute(0, 4, 5, 3, 6, 1, 7, 2).reshape(b, c, t * self.rt, h * 2, w * 2)
        if self.rt == 2 and s.first:
            y = torch.cat([y[:, :, :1], y[:, :, 2:]], dim=2)
        return self.conv(y, s)


class DownBlock(nn.Module):
    def __init__(self, cin, cout, cfg: VAEConfig, down: bool, temporal: bool):
        super().__init__()
        self.resnets = nn.ModuleList(Resnet(cin if j == 0 else cout, cout, cfg)
                                     for j in range(cfg.layers_per_block))
        self.downsamplers = nn.ModuleList([Downsample(cout, temporal)]) if down else None

    def forward(self, x, s):
        for r in self.resnets:
            x = r(x, s)
        return self.downsamplers[0](x, s) if self.downsamplers is not None else x


class UpBlock(nn.Module):
    def __init__(self, cin, cout, cfg: VAEConfig, up: bool, temporal: bool):
        super().__init__()
        self.resnets = nn.ModuleList(Resnet(cin if j == 0 else cout, cout, cfg)
                                     for j in range(cfg.layers_per_block + 1))
        self.upsamplers = nn.ModuleList([Upsample(cout, temporal)]) if up else None

    def forward(self, x, s):
        for r in self.resnets:
            x = r(x, s)
        return self.upsamplers[0](x, s) if self.upsamplers is not None else x


class Encoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        ch, n = cfg.channels, len(cfg.channels)
        self.conv_in = CausalConv3d(3, ch[0], 3)
        self.down_blocks = nn.ModuleList(
            DownBlock(ch[max(i - 1, 0)], ch[i], cfg, down=i < n - 1,
                      temporal=i >= n - cfg.temporal_down - 1) for i in range(n))
        self.mid_block = MidBlock(ch[-1], cfg)
        self.conv_norm_out = nn.GroupNorm(cfg.norm_groups, ch[-1], eps=cfg.eps)
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels, 3)

    def forward(self, x, s):
        x = self.conv_in(x, s)
        for blk in self.down_blocks:
            x = blk(x, s)
        x = self.mid_block(x, s)
        return self.conv_out(F.silu(frame_norm(self.conv_norm_out, x)), s)


class Decoder(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        rch, n = list(reversed(cfg.channels)), len(cfg.channels)
        self.conv_in = CausalConv3d(cfg.latent_channels, rch[0], 3)
        self.mid_block = MidBlock(rch[0], cfg)
        self.up_blocks = nn.ModuleList(
            UpBlock(rch[max(i - 1, 0)], rch[i], cfg, up=i < n - 1, temporal=i < cfg.temporal_down)
            for i in range(n))
        self.conv_norm_out = nn.GroupNorm(cfg.norm_groups, rch[-1], eps=cfg.eps)
        self.conv_out = CausalConv3d(rch[-1], 3, 3)

    def forward(self, z, s):
        x = self.mid_block(self.conv_in(z, s), s)
        for blk in self.up_blocks:
            x = blk(x, s)
        return self.conv_out(F.silu(frame_norm(self.conv_norm_out, x)), s)


class VideoVAE(nn.Module):
    def __init__(self, cfg: VAEConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)

    # -- time chunks ---------------------------------------------------------------------------
    def encode_moments(self, x: torch.Tensor, chunk_latents: int = 4) -> torch.Tensor:
        """(B, 3, T, H, W) in [-1, 1], T = 4n+1 -> (B, 2*16, n+1, H/8, W/8) mean and logvar,
        in time chunks of ``chunk_latents`` latent frames (exact)."""
        tf = self.cfg.temporal_factor
        assert (x.shape[2] - 1) % tf == 0, f"frames must be {tf}n+1, {x.shape=}"
        s, out = Stream(), []
        step = tf * max(1, chunk_latents)
        bounds = [0, 1 + step] + list(range(1 + 2 * step, x.shape[2] + step, step))
        for a, b in zip(bounds, bounds[1:]):
            if a >= x.shape[2]:
                break
            out.append(self.encoder(x[:, :, a:min(b, x.shape[2])], s))
            s.first = False
        return torch.cat(out, dim=2)

    def decode(self, z: torch.Tensor, chunk_latents: int = 1) -> torch.Tensor:
        """(B, 16, n, h, w) unscaled latents -> (B, 3, 4(n-1)+1, 8h, 8w), in time chunks."""
        s, out = Stream(), []
        for a in range(0, z.shape[2], max(1, chunk_latents)):
            out.append(self.decoder(z[:, :, a:a + chunk_latents], s))
            s.first = False
        return torch.cat(out, dim=2)

    # -- spatial tiles -------------------------------------------------------------------------
    def tiled(self, fn, x: torch.Tensor, factor: float, tile: int, overlap: int,
              multiple: int) -> torch.Tensor:
        """Apply ``fn`` to overlapping spatial tiles of x (tile/overlap in x's pixels; tiles at
        most ``tile``, as few as that allows, sized to the canvas) and blend the results (scaled
        by ``factor``) with linear ramps over the overlaps."""
        H, W = x.shape[-2:]
        hs, ws = (tiling.balanced_grid(n, tile, overlap, multiple) for n in (H, W))
        if len(hs) == 1 and len(ws) == 1:
            return fn(x)
        out = weight = None
        for (h0, h1), hov in zip(hs, tiling.overlaps(hs)):
            for (w0, w1), wov in zip(ws, tiling.overlaps(ws)):
                y = fn(x[..., h0:h1, w0:w1])
                m = tiling.blend_mask((0, y.shape[-2]), (0, y.shape[-1]),
                                      tuple(round(v * factor) for v in hov),
                                      tuple(round(v * factor) for v in wov), device=y.device)
                if out is None:
                    shape = (*y.shape[:-2], round(H * factor), round(W * factor))
                    out = torch.zeros(shape, device=y.device, dtype=torch.float32)
                    weight = torch.zeros(shape[-2:], device=y.device, dtype=torch.float32)
                ya, xa = round(h0 * factor), round(w0 * factor)
                out[..., ya:ya + y.shape[-2], xa:xa + y.shape[-1]] += y.float() * m
                weight[ya:ya + y.shape[-2], xa:xa + y.shape[-1]] += m
        return (out / weight).to(x.dtype)
