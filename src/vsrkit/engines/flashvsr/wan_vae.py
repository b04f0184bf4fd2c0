"""The Wan2.1 video VAE: FlashVSR Full's decoder, run as a stream, one latent frame at a time.

The module mirrors the published ``Wan2.1_VAE.pth`` key for key (``encoder.*, conv1.*, conv2.*,
decoder.*``) so the file loads strictly; only ``conv2`` and ``decoder`` ever run (the official
Full script sets ``encoder`` and ``conv1`` to None). Sizes come from tensor shapes.

Decoding follows the official ``VideoVAE_.decode`` (diffsynth/models/wan_video_vae.py at 914dcd4):
unscale ``z / (1/std) + mean``, ``conv2``, then the decoder per latent frame with a feature cache:
every causal conv with a temporal kernel of 3 keeps the last 2 time steps of its input and sees
them instead of zero padding at the next call. The first latent frame skips the two temporal
upsamples and gives 1 frame; every later one gives 4 (``1 + 4(T - 1)`` for T latents). Output
clamped to [-1, 1]. The state (``DecoderState``) holds 2 frames per causal conv, whatever the
video's length.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...errors import WeightsError
from ... import tiling
from ...ops.conv import conv3d_as_conv2d

# Per-channel latent statistics of Wan2.1 (diffsynth/models/wan_video_vae.py, WanVideoVAE)
MEAN = (-0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921)
STD = (2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
       3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160)
CONTEXT = 2  # time steps of left context of a causal conv with temporal kernel 3
SPATIAL = 8  # pixels per latent, each way
DEFAULT_TILE, DEFAULT_OVERLAP = 512, 64  # --tiled-vae defaults, output pixels


@dataclass(frozen=True)
class WanVAEConfig:
    dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_down: tuple[bool, ...] = (False, True, True)  # per encoder downsample; decoder reversed
    encoder: bool = True  # the published file has one; a decoder-only file loads too

    @classmethod
    def from_state_dict(cls, sd, name: str = "Wan2.1_VAE.pth") -> "WanVAEConfig":
        """Read every size off the decoder's shapes (the encoder must then match them)."""
        try:
            z_dim = sd["conv2.weight"].shape[0]  # (z, z, 1, 1, 1)
            ups = _indexed(sd, "decoder.upsamples.")
            stage_out, temporal, res_in_stage, n_res = [], [], 0, None
            for i in range(len(ups)):
                p = f"decoder.upsamples.{i}."
                if p + "residual.6.weight" in sd:  # a residual block: (out, out, 3, 3, 3)
                    res_in_stage += 1
                    out = sd[p + "residual.6.weight"].shape[0]
                    continue
                if p + "resample.1.weight" not in sd:
                    raise KeyError(p + "residual.6.weight")
                stage_out.append(out)
                temporal.append(p + "time_conv.weight" in sd)
                n_res = res_in_stage if n_res is None else n_res
                res_in_stage = 0
            stage_out.append(out)
            dim = (sd["encoder.conv1.weight"].shape[0] if "encoder.conv1.weight" in sd
                   else sd["decoder.head.2.weight"].shape[1])  # (3, dim * mult[0], 3, 3, 3)
        except (KeyError, UnboundLocalError) as e:
            raise WeightsError(f"{name} is not a Wan2.1 VAE (no {e})") from None
        if z_dim != len(MEAN):
            raise WeightsError(f"{name}: {z_dim} latent channels, the Wan2.1 VAE has {len(MEAN)}")
        mult = [c // dim for c in reversed(stage_out)]
        if any(m * dim != c for m, c in zip(mult, reversed(stage_out))) or n_res is None:
            raise WeightsError(f"{name} is not a Wan2.1 VAE (decoder widths {stage_out})")
        return cls(dim=dim, z_dim=z_dim, dim_mult=tuple(mult), num_res_blocks=n_res - 1,
                   temporal_down=tuple(reversed(temporal)),
                   encoder=any(k.startswith("encoder.") for k in sd))


def _indexed(sd, prefix: str) -> set[int]:
    return {int(k[len(prefix):].split(".")[0]) for k in sd if k.startswith(prefix)}


# -- layers ---------------------------------------------------------------------------------------

class CausalConv3d(nn.Conv3d):
    """Zero left padding of 2·p_t frames in time (none on the right), p in space. In a stream,
    the cached last frames of the previous call's input replace as much of the zero padding."""

    slot: int = -1  # this conv's entry in DecoderState.cache (set by the decoder)

    def __init__(self, cin: int, cout: int, k, stride=1, padding=0):
        super().__init__(cin, cout, k, stride=stride, padding=padding)
        pt, ph, pw = self.padding
        self.pad = [pw, pw, ph, ph, 2 * pt, 0]  # F.pad order: W, H, T
        self.padding = (0, 0, 0)

    def forward(self, x, state: "DecoderState | None" = None):
        pad = list(self.pad)
        if state is not None and pad[4] > 0:
            past = state.cache[self.slot]
            keep = x[:, :, -CONTEXT:]
            if keep.shape[2] < CONTEXT and past is not None:
                keep = torch.cat([past[:, :, -1:], keep], 2)
            state.cache[self.slot] = keep.clone()
            if past is not None:
                x = torch.cat([past, x], 2)  # (B, C, past + t, H, W)
                pad[4] -= past.shape[2]
        x = F.pad(x, pad)
        if x.device.type == "cpu" and x.shape[0] == 1 and self.kernel_size[0] > 1:
            return conv3d_as_conv2d(x, self.weight, self.bias, self.stride)
        return super().forward(x)


class RMSNorm(nn.Module):
    """Wan's channel RMS norm: F.normalize over channels · √C · γ (γ shaped (C, 1, 1[, 1]))."""

    def __init__(self, c: int, images: bool = False):
        super().__init__()
        self.scale = c ** 0.5
        self.gamma = nn.Parameter(torch.ones(c, 1, 1) if images else torch.ones(c, 1, 1, 1))

    def forward(self, x):
        return F.normalize(x, dim=1) * self.scale * self.gamma


class ResidualBlock(nn.Module):
    def __init__(self, cin: int, cout: int):
        super().__init__()
        # indices are the checkpoint's: 0 norm, 2 conv, 3 norm, 6 conv (5 was dropout)
        self.residual = nn.Sequential(
            RMSNorm(cin), nn.SiLU(), CausalConv3d(cin, cout, 3, padding=1),
            RMSNorm(cout), nn.SiLU(), nn.Identity(), CausalConv3d(cout, cout, 3, padding=1))
        self.shortcut = CausalConv3d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, state=None):
        h = self.shortcut(x)
        for layer in self.residual:
            x = layer(x, state) if isinstance(layer, CausalConv3d) else layer(x)
        return x + h


class AttentionBlock(nn.Module):
    """Single-head self-attention over the pixels of each frame separately."""

    def __init__(self, c: int):
        super().__init__()
        self.norm = RMSNorm(c, images=True)
        self.to_qkv = nn.Conv2d(c, 3 * c, 1)
        self.proj = nn.Conv2d(c, c, 1)

    def forward(self, x, state=None):
        B, C, T, H, W = x.shape
        y = self.norm(x.transpose(1, 2).reshape(B * T, C, H, W))
        qkv = self.to_qkv(y).reshape(B * T, 1, 3 * C, H * W).permute(0, 1, 3, 2).contiguous()
        q, k, v = qkv.chunk(3, dim=-1)  # (BT, 1, HW, C) each
        y = F.scaled_dot_product_attention(q, k, v)
        y = self.proj(y.squeeze(1).permute(0, 2, 1).reshape(B * T, C, H, W))
        return x + y.reshape(B, T, C, H, W).transpose(1, 2)


class Upsample(nn.Module):
    """Nearest-exact x2 in float32, cast back (the official bf16 fix)."""

    def forward(self, x):
        return F.interpolate(x.float(), scale_factor=(2.0, 2.0), mode="nearest-exact").type_as(x)


class Resample(nn.Module):
    """x2 in space (2d) or in space and time (3d): channels halve; or /2 (encoder)."""

    def __init__(self, c: int, mode: str):
        super().__init__()
        self.mode = mode
        self.time_conv = None
        if mode.startswith("up"):
            self.resample = nn.Sequential(Upsample(), nn.Conv2d(c, c // 2, 3, padding=1))
            if mode == "up3d":  # 2C channels = (earlier frame, later frame)
                self.time_conv = CausalConv3d(c, 2 * c, (3, 1, 1), padding=(1, 0, 0))
        else:
            self.resample = nn.Sequential(nn.ZeroPad2d((0, 1, 0, 1)), nn.Conv2d(c, c, 3, stride=2))
            if mode == "down3d":
                self.time_conv = CausalConv3d(c, c, (3, 1, 1), stride=(2, 1, 1))

    def forward(self, x, state: "DecoderState | None" = None):
        if self.mode == "up3d":
            if state is None:
                raise ValueError("the decoder runs as a stream: pass a DecoderState")
            # The first latent frame stays one frame (the official 'Rep' marker); from the
            # second on, this conv's stream starts with zero history.
            if not state.first:
                B, C, T, H, W = x.shape
                x = self.time_conv(x, state).view(B, 2, C, T, H, W)
                x = x.permute(0, 2, 3, 1, 4, 5).reshape(B, C, 2 * T, H, W)  # frames 2t, 2t+1
        elif self.mode == "down3d":
            raise NotImplementedError("the encoder is loaded, never run")
        B, C, T, H, W = x.shape
        y = self.resample(x.transpose(1, 2).reshape(B * T, C, H, W))
        return y.reshape(B, T, *y.shape[1:]).transpose(1, 2)


# -- encoder (weights only) and decoder -----------------------------------------------------------

class Encoder(nn.Module):
    """Built so the published file loads strictly; FlashVSR never encodes."""

    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        dims = [cfg.dim * m for m in (1, *cfg.dim_mult)]
        self.conv1 = CausalConv3d(3, dims[0], 3, padding=1)
        layers = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            for _ in range(cfg.num_res_blocks):
                layers.append(ResidualBlock(cin, cout))
                cin = cout
            if i != len(cfg.dim_mult) - 1:
                layers.append(Resample(cout, "down3d" if cfg.temporal_down[i] else "down2d"))
        self.downsamples = nn.Sequential(*layers)
        c = dims[-1]
        self.middle = nn.Sequential(ResidualBlock(c, c), AttentionBlock(c), ResidualBlock(c, c))
        self.head = nn.Sequential(RMSNorm(c), nn.SiLU(), CausalConv3d(c, 2 * cfg.z_dim, 3, padding=1))


@dataclass
class DecoderState:
    """A stream's memory: per causal conv its input's last 2 time steps (None before any)."""

    cache: list = field(default_factory=list)
    first: bool = True  # the next latent frame is the stream's first


class Decoder(nn.Module):
    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        mult = cfg.dim_mult
        dims = [cfg.dim * m for m in (mult[-1], *reversed(mult))]
        temporal_up = tuple(reversed(cfg.temporal_down))
        self.conv1 = CausalConv3d(cfg.z_dim, dims[0], 3, padding=1)
        self.middle = nn.Sequential(ResidualBlock(dims[0], dims[0]), AttentionBlock(dims[0]),
                                    ResidualBlock(dims[0], dims[0]))
        layers = []
        for i, (cin, cout) in enumerate(zip(dims[:-1], dims[1:])):
            cin = cin // 2 if i > 0 else cin  # the previous stage's upsample halved the channels
            for _ in range(cfg.num_res_blocks + 1):
                layers.append(ResidualBlock(cin, cout))
                cin = cout
            if i != len(mult) - 1:
                layers.append(Resample(cout, "up3d" if temporal_up[i] else "up2d"))
        self.upsamples = nn.Sequential(*layers)
        self.head = nn.Sequential(RMSNorm(dims[-1]), nn.SiLU(), CausalConv3d(dims[-1], 3, 3, padding=1))
        convs = [m for m in self.modules() if isinstance(m, CausalConv3d) and m.pad[4] > 0]
        for i, m in enumerate(convs):
            m.slot = i
        self.n_slots = len(convs)

    def new_state(self) -> DecoderState:
        return DecoderState([None] * self.n_slots)

    def forward(self, x: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """One latent frame (B, C, 1, h, w) -> (B, 3, 1 first / 4 later, 8h, 8w), unclamped."""
        x = self.conv1(x, state)
        for layer in (*self.middle, *self.upsamples):
            x = layer(x, state)
        x = self.head[1](self.head[0](x))
        x = self.head[2](x, state)
        state.first = False
        return x


class WanVAE(nn.Module):
    """Keys as ``Wan2.1_VAE.pth``: encoder.*, conv1.* (posterior), conv2.* (latent), decoder.*."""

    def __init__(self, cfg: WanVAEConfig):
        super().__init__()
        self.cfg = cfg
        if cfg.encoder:
            self.encoder = Encoder(cfg)
            self.conv1 = CausalConv3d(2 * cfg.z_dim, 2 * cfg.z_dim, 1)
        self.conv2 = CausalConv3d(cfg.z_dim, cfg.z_dim, 1)
        self.decoder = Decoder(cfg)

    def drop_encoder(self) -> "WanVAE":
        """Free what decoding never uses (after a strict load)."""
        for name in ("encoder", "conv1"):
            if hasattr(self, name):
                delattr(self, name)
        return self

    def new_state(self) -> DecoderState:
        return self.decoder.new_state()

    @torch.no_grad()
    def decode(self, z: torch.Tensor, state: DecoderState) -> torch.Tensor:
        """Scaled latents (B, 16, T, h, w), the next T of a stream -> (B, 3, 4T, or 4T - 3 for
        the stream's first, 8h, 8w) in [-1, 1]."""
        assert z.ndim == 5 and z.shape[1] == self.cfg.z_dim, f"{z.shape=}"
        # Unscale as DiffSynth does, z / (1/std) + mean, constants cast to z's dtype
        inv_std = (1.0 / torch.tensor(STD)).to(z).view(1, -1, 1, 1, 1)
        mean = torch.tensor(MEAN).to(z).view(1, -1, 1, 1, 1)
        x = self.conv2(z / inv_std + mean)
        out = [self.decoder(x[:, :, t:t + 1], state) for t in range(x.shape[2])]
        return torch.cat(out, 2).clamp_(-1, 1)


def load_wan_vae(sd: dict, name: str = "Wan2.1_VAE.pth") -> WanVAE:
    """Strictly loaded decode-only VAE from a raw or DiffSynth-prefixed (``model.``) state dict."""
    from ... import hub

    if sd and all(k.startswith("model.") for k in sd):
        sd = {k[len("model."):]: v for k, v in sd.items()}
    cfg = WanVAEConfig.from_state_dict(sd, name)
    with torch.device("meta"):
        vae = WanVAE(cfg)
    expected = {k: tuple(v.shape) for k, v in vae.state_dict().items()}
    hub.check_keys(sd, expected, name, what="Wan2.1 VAE")
    vae.load_state_dict(sd, strict=True, assign=True)
    return vae.drop_encoder().eval()


# -- the stream FlashVSR drives -------------------------------------------------------------------

class VAEStream:
    """FlashVSR's decoder interface over the VAE: ``decode(latents (T, 16, h, w), lq)`` ->
    ``(1 + 4(T-1) on the first call, else 4T, 3, 8h, 8w)`` in [-1, 1]; ``reset()`` starts a
    stream. The VAE ignores the LQ frames (``needs_lq = False``).

    With ``tiles=(tile, overlap)`` (output pixels) the latent canvas is cut into overlapping
    spatial tiles, each decoded with its own causal state, and blended with ``tiling``'s linear
    ramps (weights never 0, none at the canvas border). Peak activation memory then follows the
    tile, not the frame; conv borders and the per-frame attention see only the tile, so the result
    differs from the untiled one slightly, mostly inside the overlaps.
    """

    needs_lq = False

    def __init__(self, vae: WanVAE, tiles: tuple[int, int] | None = None):
        self.vae, self.tiles = vae, tiles
        self.reset()

    def reset(self) -> None:
        self.states: dict = {}

    def spans(self, h: int, w: int):
        """Latent tiles ((y0, y1), (x0, x1)) and their overlaps with neighbours."""
        if self.tiles is None:
            return [((0, h), (0, w), (0, 0), (0, 0))]
        tile = max(1, self.tiles[0] // SPATIAL)
        overlap = min(tile - 1, math.ceil(self.tiles[1] / SPATIAL))
        hs, ws = tiling.tile_grid(h, tile, overlap), tiling.tile_grid(w, tile, overlap)
        return [(ys, xs, yo, xo) for ys, yo in zip(hs, tiling.overlaps(hs))
                for xs, xo in zip(ws, tiling.overlaps(ws))]

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, lq: torch.Tensor | None = None) -> torch.Tensor:
        z = latents.transpose(0, 1)[None]  # (T, C, h, w) -> (1, C, T, h, w)
        h, w = z.shape[-2:]
        spans = self.spans(h, w)
        if len(spans) == 1:
            state = self.states.setdefault(0, self.vae.new_state())
            return self.vae.decode(z, state)[0].transpose(0, 1)
        out = weight = None
        for i, ((y0, y1), (x0, x1), yo, xo) in enumerate(spans):
            state = self.states.setdefault(i, self.vae.new_state())
            y = self.vae.decode(z[..., y0:y1, x0:x1], state)[0]  # (3, n, 8th, 8tw)
            m = tiling.blend_mask((y0, y1), (x0, x1), yo, xo, scale=SPATIAL, device=y.device)
            if out is None:
                out = torch.zeros(3, y.shape[1], h * SPATIAL, w * SPATIAL, device=y.device)
                weight = torch.zeros(h * SPATIAL, w * SPATIAL, device=y.device)
            ys, xs = slice(y0 * SPATIAL, y1 * SPATIAL), slice(x0 * SPATIAL, x1 * SPATIAL)
            out[:, :, ys, xs] += y.float() * m
            weight[ys, xs] += m
        return (out / weight).to(latents.dtype).transpose(0, 1)
