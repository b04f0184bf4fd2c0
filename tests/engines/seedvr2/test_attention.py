"""SeedVR2's window attention through the shared varlen dispatch (ops.attention): the batched
and flash-attn paths against the exact per-window reference, on CPU at a small size and on CUDA
(skipped without it) at a real one."""

import pytest
import torch

from vsrkit.engines.seedvr2.config import dit_3b, dit_7b
from vsrkit.engines.seedvr2.dit import WindowAttention, make_layout
from vsrkit.engines.seedvr2.windows import window_grid
from vsrkit.errors import UsageError
from vsrkit.ops.attention import VARLEN, Packed, has_flash_attn, pick_varlen


def _attn(cfg, shifted, dtype, device, seed=0):
    torch.manual_seed(seed)
    m = WindowAttention(cfg, shared=False, shifted=shifted)
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.5 / p.shape[-1] ** 0.5) if p.ndim > 1 else p.uniform_(0.5, 1.5)
    return m.to(device, dtype).eval()


def test_packed_runs():
    p = Packed([5, 5, 3, 5], "cpu")
    assert p.runs == [(0, 2, 5), (10, 1, 3), (13, 1, 5)] and p.cu.tolist() == [0, 5, 10, 13, 18]
    assert p.total == 18 and p.max_len == 5


@pytest.mark.parametrize("arch", ["3b", "7b"])
@pytest.mark.parametrize("shifted", [False, True])
def test_sdpa_equals_reference_cpu(arch, shifted):
    cfg = (dit_3b if arch == "3b" else dit_7b)(vid_dim=48, heads=2, head_dim=24, num_layers=2,
                                              txt_in_dim=32)
    grid = (5, 8, 10)  # border windows of several sizes in both partitions
    assert len({tuple(b - a for a, b in w) for w in window_grid(grid, shifted=shifted)}) > 1
    m = _attn(cfg, shifted, torch.float32, "cpu")
    lay = make_layout(cfg, grid, 7, "cpu")
    vid, txt = torch.randn(5 * 8 * 10, 48), torch.randn(7, 48)
    with torch.no_grad():
        ref = m(vid, txt, lay)
        m.attention = "sdpa"
        got = m(vid, txt, lay)
    for a, b in zip(got, ref):
        assert (a - b).abs().max() < 1e-5


def test_pick_varlen():
    assert pick_varlen("auto", "cpu", torch.float32) == "reference"
    assert pick_varlen("sdpa", "cpu", torch.float32) == "sdpa"
    with pytest.raises(UsageError, match="--attention 'flex'"):
        pick_varlen("flex", "cpu", torch.float32)
    with pytest.raises(UsageError, match="flash_attn"):
        pick_varlen("flash_attn", "cpu", torch.bfloat16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("arch", ["3b", "7b"])
def test_fast_paths_match_reference_gpu(arch):
    """A full-width attention layer at 720p, 21 frames (grid 6x45x80 tokens, 58 text tokens):
    bf16 fast paths vs the fp32 per-window reference, relative error at the bf16 level."""
    cfg = dit_3b() if arch == "3b" else dit_7b()
    grid, lt = (6, 45, 80), 58
    lay = make_layout(cfg, grid, lt, "cuda")
    ref_m = _attn(cfg, True, torch.float32, "cuda")
    g = torch.Generator("cuda").manual_seed(1)
    vid = torch.randn(grid[0] * grid[1] * grid[2], cfg.vid_dim, device="cuda", generator=g)
    txt = torch.randn(lt, cfg.vid_dim, device="cuda", generator=g)
    with torch.no_grad():
        rv, rt = ref_m(vid, txt, lay)
        fast = _attn(cfg, True, torch.bfloat16, "cuda")
        for name in ["sdpa"] + (["flash_attn"] if has_flash_attn() else []):
            fast.attention = name
            fv, ft = fast(vid.bfloat16(), txt.bfloat16(), lay)
            for a, b in ((fv, rv), (ft, rt)):
                rel = ((a.float() - b).norm() / b.norm()).item()
                assert rel < 2e-2, (name, rel)
    assert set(VARLEN) >= {"reference", "sdpa", "flash_attn"}
