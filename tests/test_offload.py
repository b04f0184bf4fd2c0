"""Block swap on CPU (same hooks and slot logic as on CUDA, plain copies) and the arithmetic
that picks how many blocks go to the host."""

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from torch import nn

from vsrkit.errors import UsageError
from vsrkit.offload import BlockSwap, blocks_on_host, resolve_offload_blocks, swap_gpu_bytes
from vsrkit.quant import quantize_linears


def make_blocks(n=6, d=32, seed=0):
    torch.manual_seed(seed)
    return nn.ModuleList(nn.Sequential(nn.LayerNorm(d), nn.Linear(d, 2 * d), nn.GELU(),
                                       nn.Linear(2 * d, d)) for _ in range(n))


def run(blocks, x):
    for b in blocks:
        x = x + b(x)
    return x


@pytest.mark.parametrize("n_on_host", [0, 1, 2, 3, 6])
def test_outputs_identical(n_on_host):
    x = torch.randn(4, 32)
    blocks = make_blocks()
    with torch.no_grad():
        ref = run(blocks, x)
        swap = BlockSwap(blocks, n_on_host, "cpu")
        for _ in range(3):  # several passes: the prefetch wraps around
            assert torch.equal(run(blocks, x), ref)
    swap.close()
    with torch.no_grad():
        assert torch.equal(run(blocks, x), ref)


def test_hook_order_prefetches_next_host_block_into_the_other_slot():
    trace = []
    blocks = make_blocks()
    swap = BlockSwap(blocks, 3, "cpu", trace=trace)
    with torch.no_grad():
        run(blocks, torch.randn(2, 32))
    assert trace == [
        ("run", 0, None), ("copy", 3, 0),  # first host block copied while block 0 runs
        ("run", 1, None), ("run", 2, None),
        ("run", 3, 0), ("copy", 4, 1), ("done", 3),
        ("run", 4, 1), ("copy", 5, 0), ("done", 4),
        ("run", 5, 0), ("copy", 3, 1), ("done", 5),  # wraps to the next pass
    ]
    trace.clear()
    with torch.no_grad():
        run(blocks, torch.randn(2, 32))
    # Second pass: block 3 is already in slot 1, so nothing is copied before it runs.
    assert trace[:4] == [("run", 0, None), ("run", 1, None), ("run", 2, None), ("run", 3, 1)]
    # A copy never targets the slot of the block that is running.
    running = None
    for ev in trace:
        if ev[0] == "run":
            running = ev[2]
        elif ev[0] == "copy":
            assert ev[2] != running
        else:
            running = None
    assert "3 of 6 blocks" in swap.describe() and len(swap.slots) == 2


def test_out_of_order_calls_load_on_demand():
    blocks = make_blocks()
    x = torch.randn(2, 32)
    with torch.no_grad():
        ref = [b(x) for b in blocks]
        BlockSwap(blocks, 4, "cpu")
        for i in (5, 2, 4, 4, 3, 0, 5):
            assert torch.equal(blocks[i](x), ref[i])


def test_host_blocks_live_in_the_flat_buffer_and_fp8_blocks_swap():
    blocks = make_blocks()
    quantize_linears(blocks)  # quantize first, then swap (the swap tracks the tensors it saw)
    x = torch.randn(3, 32)
    with torch.no_grad():
        ref = run(blocks, x)
        swap = BlockSwap(blocks, 3, "cpu")
        assert torch.equal(run(blocks, x), ref)
    host_tensors = [t for b in blocks[3:] for t in list(b.parameters()) + list(b.buffers())]
    assert swap.host_bytes >= sum(t.numel() * t.element_size() for t in host_tensors)
    w = blocks[4][1].weight
    assert w.dtype == torch.float8_e4m3fn
    assert w.untyped_storage().data_ptr() == swap._host_buf[4].untyped_storage().data_ptr()


def test_too_many_blocks_is_a_usage_error():
    with pytest.raises(UsageError, match="has 6 blocks"):
        BlockSwap(make_blocks(), 7, "cpu")


def test_swap_gpu_bytes():
    assert swap_gpu_bytes([10] * 5, 0) == 50
    assert swap_gpu_bytes([10] * 5, 1) == 50  # one slot for one block: nothing saved
    assert swap_gpu_bytes([10] * 5, 2) == 50
    assert swap_gpu_bytes([10] * 5, 4) == 30  # 1 resident + 2 slots
    assert swap_gpu_bytes([10, 10, 10, 30], 2) == 20 + 2 * 30  # slots fit the largest host block


def test_blocks_on_host_choices():
    sizes = [74] * 30
    assert blocks_on_host(sizes, 500, None) == 0
    assert blocks_on_host(sizes, 500, 10_000) == 0
    n = blocks_on_host(sizes, 500, 2000)
    assert 500 + swap_gpu_bytes(sizes, n) <= 2000 < 500 + swap_gpu_bytes(sizes, n - 1)
    assert blocks_on_host(sizes, 500, 100) == 30  # nothing fits: all, the planner decides


@given(st.lists(st.integers(1, 1000), min_size=1, max_size=40), st.integers(0, 5000),
       st.integers(0, 50_000))
def test_blocks_on_host_is_the_smallest_that_fits(sizes, other, budget):
    n = blocks_on_host(sizes, other, budget)
    assert 0 <= n <= len(sizes)
    if other + swap_gpu_bytes(sizes, n) <= budget:
        assert all(other + swap_gpu_bytes(sizes, k) > budget for k in range(n))
    else:
        assert n == len(sizes)


def test_resolve_offload_blocks():
    kw = dict(block_bytes=[10] * 30, other_bytes=0, budget=100)
    assert resolve_offload_blocks("auto", device="cpu", **kw) == 0  # nothing to save on CPU
    assert resolve_offload_blocks("12", device="cpu", **kw) == 0
    assert resolve_offload_blocks("auto", device="cuda", **kw) == 22  # 8 resident + 2 slots
    assert resolve_offload_blocks("12", device="cuda", **kw) == 12
    with pytest.raises(UsageError, match="has 30 blocks"):
        resolve_offload_blocks("31", device="cuda", **kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("n_on_host", [0, 3, 6])
def test_gpu_outputs_identical_and_weights_on_host(n_on_host):
    dev = torch.device("cuda")
    blocks = make_blocks()
    x = torch.randn(64, 32, device=dev)
    with torch.no_grad():
        ref = run(make_blocks().to(dev), x)  # same seed, same weights
        swap = BlockSwap(blocks, n_on_host, dev)
        for _ in range(3):
            assert torch.equal(run(blocks, x), ref)
    for i, b in enumerate(blocks):
        on_host = i >= len(blocks) - n_on_host
        assert b[1].weight.device.type == ("cpu" if on_host else "cuda")
        assert b[1].weight.is_pinned() == on_host
    swap.close()
