"""Config inference round trip on tiny random configs (spandrel's assert_loads_correctly)."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vsrkit.engines.seedvr2.config import (VAEConfig, dit_3b, dit_7b, infer_dit_config,
                                           infer_vae_config)
from vsrkit.engines.seedvr2.dit import NaDiT
from vsrkit.engines.seedvr2.vae import VideoVAE
from vsrkit.errors import WeightsError


def shapes(module):
    return {k: torch.empty(v.shape, device="meta") for k, v in module.state_dict().items()}


@settings(max_examples=25, deadline=None)
@given(arch=st.sampled_from(["3b", "7b"]), heads=st.integers(1, 4), head_dim=st.sampled_from([12, 16, 24]),
       layers=st.integers(1, 5), mm=st.integers(1, 5), txt=st.sampled_from([32, 64]))
def test_dit_roundtrip(arch, heads, head_dim, layers, mm, txt):
    dim = heads * head_dim
    cfg = dit_3b(vid_dim=dim, heads=heads, head_dim=head_dim, num_layers=layers,
                 mm_layers=min(mm, layers), txt_in_dim=txt) if arch == "3b" else \
        dit_7b(vid_dim=dim, heads=heads, head_dim=head_dim, num_layers=layers, txt_in_dim=txt)
    with torch.device("meta"):
        m = NaDiT(cfg)
    assert infer_dit_config(shapes(m)) == cfg


@settings(max_examples=15, deadline=None)
@given(ch=st.lists(st.sampled_from([4, 8, 12]), min_size=2, max_size=4), layers=st.integers(1, 3),
       tdown=st.integers(0, 2))
def test_vae_roundtrip(ch, layers, tdown):
    cfg = VAEConfig(channels=tuple(ch), layers_per_block=layers, norm_groups=4,
                    temporal_down=min(tdown, len(ch) - 1))
    with torch.device("meta"):
        m = VideoVAE(cfg)
    assert infer_vae_config(shapes(m), 4) == cfg


def test_not_a_dit_names_the_file():
    with pytest.raises(WeightsError, match="x.pth is not a SeedVR2 DiT"):
        infer_dit_config({"foo": torch.zeros(1)}, "x.pth")
