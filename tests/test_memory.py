"""Budgets, module sizes and out-of-memory fallbacks (OOM simulated by a step that fails
above a budget, as CUDA would)."""

import pytest
import torch
from torch import nn

from vsrkit.errors import ResourceError, UsageError
from vsrkit.memory import (Fallbacks, auto_margin, fits, format_bytes, is_oom, module_bytes,
                           retry_on_oom, vram_budget)


def test_vram_budget_parsing():
    assert vram_budget("24GiB", "cuda") == 24 * 2**30
    assert vram_budget("1.5 GB", "cpu") == 1_500_000_000
    assert vram_budget("auto", "cpu") is None
    with pytest.raises(UsageError, match="--vram-budget"):
        vram_budget("lots", "cuda")
    assert auto_margin(80 * 2**30) == 4 * 2**30 and auto_margin(8 * 2**30) == 768 * 2**20


def test_module_bytes_counts_shared_tensors_once_and_works_on_meta():
    lin = nn.Linear(10, 20)
    assert module_bytes(lin) == (200 + 20) * 4
    tied = nn.Sequential(lin, nn.Linear(10, 20))
    tied[1].weight = lin.weight
    assert module_bytes(tied) == (200 + 20 + 20) * 4
    with torch.device("meta"):
        big = nn.Linear(1536, 8960, dtype=torch.bfloat16)
    assert module_bytes(big) == (1536 * 8960 + 8960) * 2
    bn = nn.BatchNorm1d(8)
    assert module_bytes(bn) > module_bytes(bn, buffers=False)


def test_fits_and_format():
    assert fits(10, None) and fits(10, 10) and not fits(11, 10)
    assert format_bytes(3 * 2**30) == "3.00 GiB" and format_bytes(512) == "512 B"


def test_is_oom():
    assert is_oom(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB"))
    assert is_oom(RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling cublasCreate"))
    assert not is_oom(RuntimeError("shape mismatch"))
    assert not is_oom(ValueError("out of memory"))


class FakeGPU:
    """A unit of work that needs ``tile**2`` bytes and fails like CUDA above ``budget``."""

    def __init__(self, budget):
        self.budget, self.calls = budget, []

    def step(self, tile):
        self.calls.append(tile)
        if tile * tile > self.budget:
            raise torch.cuda.OutOfMemoryError(f"CUDA out of memory. Tried to allocate {tile**2} B")
        return f"done with {tile}"


def test_retry_steps_down_and_says_so_once():
    gpu, said = FakeGPU(budget=300 * 300), []
    fb = Fallbacks([512, 384, 256, 128], said.append, describe=lambda t: f"tile {t}")
    assert retry_on_oom(gpu.step, fb) == "done with 256"
    assert gpu.calls == [512, 384, 256]
    assert said == ["out of GPU memory with tile 512; retrying with tile 384",
                    "out of GPU memory with tile 384; retrying with tile 256"]
    # The next unit starts from the plan that worked: no failed attempt, no new notice.
    assert retry_on_oom(gpu.step, fb) == "done with 256"
    assert gpu.calls[3:] == [256] and len(said) == 2 and fb.plan == 256


def test_retry_with_a_plain_list_and_first_plan_fitting():
    gpu, said = FakeGPU(budget=10**9), []
    assert retry_on_oom(gpu.step, [512, 256], said.append) == "done with 512"
    assert said == []


def test_smallest_plan_failing_is_a_resource_error():
    gpu = FakeGPU(budget=10)
    with pytest.raises(ResourceError, match=r"smallest plan \(64\).*--offload-blocks"):
        retry_on_oom(gpu.step, [128, 64])
    assert gpu.calls == [128, 64]


def test_other_errors_pass_through_untouched():
    def step(plan):
        raise RuntimeError("expected 4 dims")

    with pytest.raises(RuntimeError, match="expected 4 dims"):
        retry_on_oom(step, [1, 2])


def test_failed_step_memory_is_released_before_retry():
    """The failed step's tensors are unreachable when the next plan runs (the traceback is
    dropped before the cache is emptied)."""
    import weakref

    refs = []

    def step(plan):
        big = torch.empty(1000)
        refs.append(weakref.ref(big))
        if plan == "big":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory")
        assert refs[0]() is None
        return plan

    assert retry_on_oom(step, ["big", "small"]) == "small"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_gpu_real_oom_falls_back():
    total = torch.cuda.get_device_properties(0).total_memory
    said = []

    def step(nbytes):
        t = torch.empty(nbytes, dtype=torch.uint8, device="cuda")
        return t.numel()

    assert retry_on_oom(step, [2 * total, 2**20], said.append) == 2**20
    assert len(said) == 1 and "retrying" in said[0]
    assert vram_budget("auto", "cuda") > 0
