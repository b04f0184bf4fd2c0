"""The Wan2.1 VAE decoder of FlashVSR Full.

Golden ``data/wan_vae_decode.npz``: the official ``VideoVAE_.decode`` (diffsynth/models/
wan_video_vae.py, OpenImagingLab/FlashVSR at 914dcd4), run on CPU in float32 with the state dict of
``tiny.make_tiny_wan_vae(seed=0, dim=8)`` (strict load), encoder and conv1 set to None as the Full
script does, ``scale = [mean, 1/std]`` of ``WanVideoVAE``, 6 latents (FlashVSR's first step) of
``randn((1, 16, 6, 3, 4), Generator().manual_seed(11))``, output clamped as ``single_decode``.
Stored: latents, the 21 frames (float32) and a digest of the weights. vsrkit's stream matched it
bit for bit in every chunking below
with torch's conv3d (the CPU path now stacks taps into a 2D conv: within 5e-6). The official code and its harness are not in this repository.
"""

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.parity import PARITY_ROOT as PARITY
from tests.engines.flashvsr.tiny import make_tiny_wan_vae
from vsrkit.engines.flashvsr.wan_vae import VAEStream, WanVAE, WanVAEConfig, load_wan_vae
from vsrkit.errors import WeightsError

GOLDEN = Path(__file__).parent / "data" / "wan_vae_decode.npz"


def digest(sd) -> str:
    h = hashlib.sha256()
    for k in sorted(sd):
        h.update(k.encode() + sd[k].numpy().tobytes())
    return h.hexdigest()


def test_full_size_keys_and_shapes_match_manifest():
    manifest = PARITY / "flashvsr" / "manifests" / "Wan2.1_VAE.pth.json"
    if not manifest.exists():
        pytest.skip(f"no manifest at {manifest} (set VSRKIT_PARITY_DIR)")
    with torch.device("meta"):
        vae = WanVAE(WanVAEConfig())
    sd = vae.state_dict()
    assert {k: list(v.shape) for k, v in sd.items()} == json.loads(manifest.read_text())["keys"]
    assert WanVAEConfig.from_state_dict(sd) == WanVAEConfig()  # sizes read back off the shapes


@pytest.mark.parametrize("chunks", [[6], [1] * 6, [1, 3, 2], [2, 4]])
def test_stream_matches_official_decode(chunks):
    """On the CPU the causal convs run as 2D convs over stacked taps (ops.conv), equal to the
    official conv3d up to summation order (max 5e-6 seen); with conv3d it was bit for bit."""
    g = np.load(GOLDEN)
    sd = make_tiny_wan_vae(seed=0, dim=8)
    assert str(g["weights_digest"]) == digest(sd), \
        "tiny.make_tiny_wan_vae changed: the golden was made with the old weights"
    vae = load_wan_vae(sd)
    z, ref = torch.from_numpy(g["latents"]), torch.from_numpy(g["frames"])
    state, outs, a = vae.new_state(), [], 0
    for n in chunks:  # FlashVSR decodes 6 latents, then 2 per step: any split gives the same
        outs.append(vae.decode(z[:, :, a:a + n], state))
        a += n
    out = torch.cat(outs, 2)[0]
    assert out.shape == ref.shape == (3, 21, 24, 32)
    assert 0.01 < (ref.abs() == 1).float().mean() < 0.2  # clamped somewhere, not everywhere
    assert torch.allclose(out, ref, atol=2e-5, rtol=0), (out - ref).abs().max()


@pytest.mark.parametrize("cfg", [WanVAEConfig(dim=4, dim_mult=(1, 2, 2), num_res_blocks=1,
                                              temporal_down=(True, False)),
                                 WanVAEConfig(dim=8, encoder=False)])
def test_config_read_off_the_shapes(cfg):
    vae = WanVAE(cfg)
    assert WanVAEConfig.from_state_dict(vae.state_dict()) == cfg
    frames = vae.decode(torch.randn(1, 16, 3, 2, 3), vae.new_state())
    up = 2 ** (len(cfg.dim_mult) - 1)  # spatial x2 per upsample stage
    per_latent = 2 ** sum(cfg.temporal_down)  # temporal x2 per 3d stage, after the first latent
    assert frames.shape == (1, 3, 1 + 2 * per_latent, 2 * up, 3 * up)


def test_diffsynth_prefix_loads_and_bad_files_say_why():
    sd = make_tiny_wan_vae(dim=4)
    vae = load_wan_vae({"model." + k: v for k, v in sd.items()})
    assert not hasattr(vae, "encoder") and not hasattr(vae, "conv1")  # decode only
    bad = dict(sd)
    bad["decoder.head.2.bias"] = torch.zeros(4)
    with pytest.raises(WeightsError, match=r"decoder.head.2.bias is \(4,\), expected \(3,\)"):
        load_wan_vae(bad, "x.pth")
    with pytest.raises(WeightsError, match="x.pth is not a Wan2.1 VAE"):
        load_wan_vae({"decoder.conv1.weight": torch.zeros(1)}, "x.pth")


def test_state_is_bounded_in_time():
    vae = load_wan_vae(make_tiny_wan_vae(dim=4))
    state = vae.new_state()
    sizes = []
    for t in range(8):
        frames = vae.decode(torch.randn(1, 16, 1, 2, 2), state)
        assert frames.shape[2] == (1 if t == 0 else 4)
        sizes.append(sum(c.numel() for c in state.cache if c is not None))
    assert sizes[3:] == [sizes[3]] * 5 and all(c.shape[2] == 2 for c in state.cache)


def test_tiled_stream_close_to_untiled():
    """Two tiles of 16x16 latents (128 px) overlapping by 8 (64 px) over a 16x24 latent canvas,
    each with its own causal state, 29 frames in two calls. The mid attention's output
    projection is zero (Wan's initialisation) so the decoder is local, as a trained one nearly
    is: far from the overlap (beyond the ~10-latent receptive field) tiled equals untiled, inside
    it the ramps blend two border-affected decodes. Measured: max 0.26, mean 0.007 (of [-1, 1])."""
    sd = make_tiny_wan_vae(seed=3, dim=8)
    sd["decoder.middle.1.proj.weight"].zero_()
    vae = load_wan_vae(sd)
    z = torch.randn(8, 16, 16, 24, generator=torch.Generator().manual_seed(4))
    whole, tiled = VAEStream(vae), VAEStream(vae, tiles=(128, 64))
    assert [s[1] for s in tiled.spans(16, 24)] == [(0, 16), (8, 24)]
    a = torch.cat([whole.decode(z[:6]), whole.decode(z[6:])])
    b = torch.cat([tiled.decode(z[:6]), tiled.decode(z[6:])])
    assert a.shape == b.shape == (29, 3, 128, 192)
    d = (a - b).abs()
    assert d[..., :40].max() < 1e-4 and d[..., 152:].max() < 1e-4  # one tile's interior
    assert d.max() < 0.3 and d.mean() < 0.01, (d.max(), d.mean())
