"""SeedVR2 model configurations, read off checkpoint tensor shapes (spandrel style).

Two DiT architectures share the key layout ``vid_in / txt_in / emb_in / blocks.N / vid_out``:

* ``3b`` (official ``models.dit_v2.nadit.NaDiT``): separate video/text weights in the first
  ``mm_layers`` blocks (``.vid.``/``.txt.``), shared weights after (``.all.``), SwiGLU MLP without
  biases, mmrope3d over text + video, an RMS output norm with its own modulation, and a last
  block without text MLP/modulation.
* ``7b`` (official ``models.dit.nadit.NaDiT``): separate weights in every block, GELU(tanh) MLP
  with biases, pixel RoPE over the video only, no output norm.

What no tensor holds is fixed by the official configs (``configs_3b/main.yaml``,
``configs_7b/main.yaml``): the window rule, norm eps, rope type; the 3B rope width is head_dim
(``rope_dim: 128``), the 7B's head_dim // 2. The VAE's GroupNorm group count is not in any shape
either: 32 for the published VAE, 4 for the tiny test VAE (model ids ``*-tiny``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ...errors import WeightsError

TEXT_DIM = 5120  # the fixed text embedding's width (pos_emb.pt: (58, 5120))


@dataclass(frozen=True)
class DiTConfig:
    arch: str  # "3b" or "7b"
    vid_dim: int
    txt_in_dim: int
    heads: int
    head_dim: int
    num_layers: int
    mm_layers: int  # blocks with separate video/text weights (7b: all)
    mlp_hidden: int
    emb_dim: int  # 6 * vid_dim
    in_channels: int = 33  # noise 16 + LQ latent 16 + mask 1
    out_channels: int = 16
    patch: tuple[int, int, int] = (1, 2, 2)
    windows: tuple[int, int, int] = (4, 3, 3)
    norm_eps: float = 1e-5
    hidden_act_in: int = 256  # sinusoidal timestep width

    @property
    def rope_dim(self) -> int:
        return self.head_dim if self.arch == "3b" else self.head_dim // 2

    @property
    def rope_freqs(self) -> int:
        """Frequencies per axis (the official ``rope.rope.freqs`` buffer length)."""
        return (self.rope_dim // 3) // 2


def _count(sd, pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m.group(1)) for k in sd for m in [rx.match(k)] if m}
    return max(found) + 1 if found else 0


def infer_dit_config(sd, file: str = "DiT checkpoint") -> DiTConfig:
    try:
        dim, patch_in = sd["vid_in.proj.weight"].shape
        txt_in = sd["txt_in.weight"].shape[1]
        emb_dim = sd["emb_in.proj_out.weight"].shape[0]
        num_layers = _count(sd, r"blocks\.(\d+)\.")
        qk = "blocks.0.attn.norm_q.vid.weight"
        head_dim = sd[qk].shape[0]
        qkv = sd["blocks.0.attn.proj_qkv.vid.weight"].shape[0]
    except KeyError as e:
        raise WeightsError(f"{file} is not a SeedVR2 DiT (missing {e.args[0]})") from None
    if "blocks.0.mlp.vid.proj_in_gate.weight" in sd:
        arch = "3b"
        mlp_hidden = sd["blocks.0.mlp.vid.proj_in_gate.weight"].shape[0]
        mm_layers = _count(sd, r"blocks\.(\d+)\.attn\.proj_qkv\.vid\.")
    else:
        arch = "7b"
        mlp_hidden = sd["blocks.0.mlp.vid.proj_in.weight"].shape[0]
        mm_layers = num_layers
    out_ch = sd["vid_out.proj.weight"].shape[0] // 4
    return DiTConfig(arch=arch, vid_dim=dim, txt_in_dim=txt_in, heads=qkv // 3 // head_dim,
                     head_dim=head_dim, num_layers=num_layers, mm_layers=mm_layers,
                     mlp_hidden=mlp_hidden, emb_dim=emb_dim, in_channels=patch_in // 4,
                     out_channels=out_ch)


def swiglu_hidden(dim: int, expand: int = 4, multiple: int = 256) -> int:
    """The official SwiGLU width: 2/3 of dim*expand rounded up to a multiple of 256."""
    h = int(2 * dim * expand / 3)
    return multiple * ((h + multiple - 1) // multiple)


def dit_3b(**kw) -> DiTConfig:
    """The published 3B (``configs_3b/main.yaml``); keywords shrink it for tests."""
    c = dict(arch="3b", vid_dim=2560, txt_in_dim=TEXT_DIM, heads=20, head_dim=128, num_layers=32,
             mm_layers=10)
    c.update(kw)
    c.setdefault("mlp_hidden", swiglu_hidden(c["vid_dim"]))
    c.setdefault("emb_dim", 6 * c["vid_dim"])
    return DiTConfig(**c)


def dit_7b(**kw) -> DiTConfig:
    """The published 7B (``configs_7b/main.yaml``)."""
    c = dict(arch="7b", vid_dim=3072, txt_in_dim=TEXT_DIM, heads=24, head_dim=128, num_layers=36)
    c.update(kw)
    c.setdefault("mm_layers", c["num_layers"])
    c.setdefault("mlp_hidden", 4 * c["vid_dim"])
    c.setdefault("emb_dim", 6 * c["vid_dim"])
    return DiTConfig(**c)


@dataclass(frozen=True)
class VAEConfig:
    channels: tuple[int, ...] = (128, 256, 512, 512)  # block_out_channels
    layers_per_block: int = 2  # encoder; the decoder has one more
    latent_channels: int = 16
    norm_groups: int = 32  # not in any shape: fixed per model id
    temporal_down: int = 2  # blocks that halve time (the last ones before the final block)
    eps: float = 1e-6
    scaling: float = 0.9152
    shift: float = 0.0

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.channels) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** self.temporal_down


def infer_vae_config(sd, norm_groups: int, file: str = "VAE checkpoint") -> VAEConfig:
    try:
        n_blocks = _count(sd, r"encoder\.down_blocks\.(\d+)\.")
        channels = tuple(sd[f"encoder.down_blocks.{i}.resnets.0.conv2.weight"].shape[0]
                         for i in range(n_blocks))
        layers = _count(sd, r"encoder\.down_blocks\.0\.resnets\.(\d+)\.")
        latent = sd["encoder.conv_out.weight"].shape[0] // 2
    except KeyError as e:
        raise WeightsError(f"{file} is not a SeedVR2 VAE (missing {e.args[0]})") from None
    tdown = sum(1 for i in range(n_blocks - 1)
                if sd[f"encoder.down_blocks.{i}.downsamplers.0.conv.weight"].shape[2] == 3)
    return VAEConfig(channels=channels, layers_per_block=layers, latent_channels=latent,
                     norm_groups=norm_groups, temporal_down=tdown)
