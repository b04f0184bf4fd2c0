"""The estimates' weight bytes equal the bytes of the models built on the meta device, for
the published configs and random small ones."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from vsrkit.engines.flashvsr.dit import DiTConfig, WanDiT
from vsrkit.engines.flashvsr.lq_proj import LQProjector
from vsrkit.engines.flashvsr.tcdecoder import TCDecoder
from vsrkit.engines.seedvr2.config import VAEConfig, dit_3b, dit_7b
from vsrkit.engines.seedvr2.dit import NaDiT
from vsrkit.engines.seedvr2.vae import VideoVAE
from vsrkit.estimate import flashvsr as ef
from vsrkit.estimate import seedvr2 as es
from vsrkit.estimate.common import placed_weights
from vsrkit.memory import module_bytes
from vsrkit.quant import quantize_linears


def meta(factory, dtype=torch.bfloat16):
    with torch.device("meta"):
        return factory().to(dtype)


def fv_shapes(dim, ffn, layers, text, lq, tc):
    cfg = DiTConfig(dim=dim, in_dim=16, ffn_dim=ffn, text_dim=text, freq_dim=256,
                    num_layers=layers, out_dim=16, num_heads=max(1, dim // 128))
    return cfg, ef.FlashVSRShapes.from_configs(cfg, lq, tc)


def check_flashvsr(cfg, s, lq, tc):
    dit = meta(lambda: WanDiT(cfg))
    gpu, host = placed_weights(ef.dit_weights(s), "bf16", None, 0)
    assert (gpu, host) == (module_bytes(dit), 0)
    assert ef.lq_params(s) * 2 == module_bytes(meta(lambda: LQProjector(*lq, cfg.dim, causal=True)))
    assert ef.tc_params(s) * 2 == module_bytes(meta(lambda: TCDecoder(list(tc))))


def test_flashvsr_published():
    lq, tc = (3, 2048, 3072), (512, 256, 128, 128)
    cfg, s = fv_shapes(1536, 8960, 30, 4096, lq, tc)
    check_flashvsr(cfg, s, lq, tc)
    assert module_bytes(meta(lambda: WanDiT(cfg))) == 2_837_993_600  # 1.42 B parameters


@settings(max_examples=15, deadline=None)
@given(st.sampled_from([128, 256, 384]), st.integers(1, 4), st.integers(1, 3),
       st.sampled_from([32, 64]), st.tuples(st.integers(8, 64), st.integers(8, 64),
                                           st.integers(8, 64), st.integers(8, 64)))
def test_flashvsr_random_configs(dim, ffn_mult, layers, text, tc):
    lq = (3, 64, 96)
    cfg, s = fv_shapes(dim, ffn_mult * dim, layers, text, lq, tc)
    check_flashvsr(cfg, s, lq, tc)


@pytest.mark.parametrize("cfg", [dit_3b(), dit_7b(),
                                 dit_3b(vid_dim=256, heads=2, num_layers=4, mm_layers=2),
                                 dit_7b(vid_dim=256, heads=2, num_layers=3)],
                         ids=["3b", "7b", "3b-small", "7b-small"])
def test_seedvr2_dit(cfg):
    gpu, _ = placed_weights(es.dit_weights(cfg), "bf16", None, 0)
    assert gpu == module_bytes(meta(lambda: NaDiT(cfg)))


@pytest.mark.parametrize("v", [VAEConfig(), VAEConfig(channels=(8, 16, 16, 32), norm_groups=4),
                               VAEConfig(channels=(8, 16, 32), layers_per_block=1, temporal_down=1,
                                         norm_groups=4)])
def test_seedvr2_vae(v):
    assert es.vae_params(v) * 2 == module_bytes(meta(lambda: VideoVAE(v)))


def test_fp8_and_offload_bytes_match_the_swapped_modules():
    """FP8 block linears: the quantized meta model's bytes; offload: BlockSwap's arithmetic."""
    cfg, s = fv_shapes(256, 512, 4, 64, (3, 64, 96), (16, 16, 16, 16))
    dit = meta(lambda: WanDiT(cfg))
    quantize_linears(dit.blocks)
    gpu, host = placed_weights(ef.dit_weights(s), "bf16", "fp8", 0)
    assert gpu == module_bytes(dit)
    blocks = [module_bytes(b) for b in dit.blocks]
    gpu3, host3 = placed_weights(ef.dit_weights(s), "bf16", "fp8", 3)
    assert host3 == sum(blocks[1:])
    assert gpu3 == gpu - sum(blocks[1:]) + 2 * max(blocks[1:])
