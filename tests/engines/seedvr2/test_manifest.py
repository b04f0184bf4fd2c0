"""Full-size 3B, 7B and VAE built on the meta device match the published checkpoints' key/shape
manifests (data/manifests.json: the official layouts, incl. the RoPE buffers the loader drops);
config inference reads the published sizes back."""

import json

import pytest
import torch

from vsrkit.engines.seedvr2.config import (VAEConfig, dit_3b, dit_7b, infer_dit_config,
                                           infer_vae_config)
from vsrkit.engines.seedvr2.dit import NaDiT
from vsrkit.engines.seedvr2.vae import VideoVAE
from vsrkit.engines.seedvr2.weights import ROPE_SUFFIX

from .common import DATA

MANIFESTS = json.loads((DATA / "manifests.json").read_text())


def meta_sd(module_fn):
    with torch.device("meta"):
        return {k: tuple(v.shape) for k, v in module_fn().state_dict().items()}


@pytest.mark.parametrize("file,cfg", [("seedvr2_ema_3b.pth", dit_3b()), ("seedvr2_ema_7b.pth", dit_7b())])
def test_dit_manifest(file, cfg):
    want = {k: tuple(v) for k, v in MANIFESTS[file].items()}
    got = meta_sd(lambda: NaDiT(cfg))
    assert got == {k: v for k, v in want.items() if not k.endswith(ROPE_SUFFIX)}
    assert all(v == (cfg.rope_freqs,) for k, v in want.items() if k.endswith(ROPE_SUFFIX))
    # the study's sizes: 3B 32 blocks of 2560 (mm 10, rope 21 freqs); 7B 36 of 3072 (10 freqs)
    assert (cfg.rope_freqs, cfg.num_layers) == ((21, 32) if "3b" in file else (10, 36))
    shapes = {k: torch.empty(v, device="meta") for k, v in want.items()}
    assert infer_dit_config(shapes) == cfg
    n = sum(torch.Size(v).numel() for v in want.values())
    assert 3.3e9 < n < 3.5e9 if "3b" in file else 8.1e9 < n < 8.4e9


def test_vae_manifest():
    want = {k: tuple(v) for k, v in MANIFESTS["ema_vae.pth"].items()}
    assert meta_sd(lambda: VideoVAE(VAEConfig())) == want
    shapes = {k: torch.empty(v, device="meta") for k, v in want.items()}
    assert infer_vae_config(shapes, 32) == VAEConfig()
