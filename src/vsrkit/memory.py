"""GPU memory budget helpers shared by the planner and the engines.

A *budget* is the peak number of bytes this process may have allocated on the device through
torch's caching allocator (what ``torch.cuda.max_memory_allocated`` reports). ``None`` means
no limit (CPU, or nothing to plan against).

``retry_on_oom`` is the last line of defence: the planner picks a plan predicted to fit, and
when CUDA still runs out of memory the failed unit of work is retried with the next smaller
plan instead of ending the run.
"""

from __future__ import annotations

import gc
from dataclasses import dataclass, field
from typing import Callable, Generic, Sequence, TypeVar

import torch
from torch import nn

from .errors import ResourceError
from .options import parse_bytes

# What `auto` keeps back from the device's free memory: the CUDA context's later growth
# (cuBLAS/cuDNN workspaces, kernels loaded on first use) and allocator fragmentation.
AUTO_MARGIN_MIN_BYTES = 768 * 2**20
AUTO_MARGIN_FRACTION = 0.05  # of the device's total memory

P = TypeVar("P")
T = TypeVar("T")


def auto_margin(total_bytes: int) -> int:
    return max(AUTO_MARGIN_MIN_BYTES, int(total_bytes * AUTO_MARGIN_FRACTION))


def vram_budget(text: str, device: torch.device | str) -> int | None:
    """``--vram-budget``: ``auto`` = what this process holds (torch's reserved pool) plus the
    device's free memory, minus ``auto_margin``; or an explicit size like ``24GiB``.
    Devices other than CUDA have no budget (``None``)."""
    device = torch.device(device)
    if text != "auto":
        return parse_bytes(text, "vram_budget")
    if device.type != "cuda":
        return None
    free, total = torch.cuda.mem_get_info(device)
    return max(0, free + torch.cuda.memory_reserved(device) - auto_margin(total))


def tensor_bytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def module_bytes(module: nn.Module, *, buffers: bool = True) -> int:
    """Bytes of a module's parameters (and buffers), each shared tensor counted once.
    Works on meta modules, so a model built on ``torch.device("meta")`` can be sized
    before any weight is read."""
    seen: set[int] = set()
    total = 0
    tensors = list(module.parameters())
    if buffers:
        tensors += list(module.buffers())
    for t in tensors:
        if id(t) not in seen:
            seen.add(id(t))
            total += tensor_bytes(t)
    return total


def fits(pred_bytes: int, budget: int | None) -> bool:
    return budget is None or pred_bytes <= budget


def format_bytes(n: int | float) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} B"


# -- out-of-memory recovery --------------------------------------------------------------------

# Allocation failures that do not arrive as torch.OutOfMemoryError: cuBLAS failing to get its
# workspace, and messages from extensions (Triton, flash-attn) that re-raise as RuntimeError.
_OOM_MESSAGES = ("CUDA out of memory", "CUBLAS_STATUS_ALLOC_FAILED", "out of memory")


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and any(m in str(exc) for m in _OOM_MESSAGES)


def free_cached_memory() -> None:
    """Drop unreachable tensors and hand torch's cached blocks back to the driver."""
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class Fallbacks(Generic[P]):
    """Plans from best to smallest. Sticky: once a unit needed a smaller plan, later units
    start from it, and each step down is announced once (not once per unit)."""

    plans: Sequence[P]
    notice: Callable[[str], None] | None = None
    describe: Callable[[P], str] = str
    index: int = 0
    _announced: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if not self.plans:
            raise ValueError("Fallbacks needs at least one plan")

    @property
    def plan(self) -> P:
        return self.plans[self.index]


def retry_on_oom(step: Callable[[P], T], fallbacks: Fallbacks[P] | Sequence[P],
                 notice: Callable[[str], None] | None = None) -> T:
    """Run ``step(plan)``; on CUDA out-of-memory free the cache and run it again with the next
    smaller plan. ``fallbacks`` is a ``Fallbacks`` (keep one per run, so the step down sticks)
    or a sequence of plans, best first. ``notice`` (or ``fallbacks.notice``) receives one line
    per step down. Raises ``ResourceError`` when the smallest plan also runs out of memory.

    ``step`` must be a whole unit of work: it may not have changed lasting state (caches,
    counters) when it fails, since it is run again from the start."""
    if not isinstance(fallbacks, Fallbacks):
        fallbacks = Fallbacks(list(fallbacks), notice)
    say = notice or fallbacks.notice
    while True:
        plan = fallbacks.plan
        failed: str | None = None
        try:
            return step(plan)
        except (torch.OutOfMemoryError, RuntimeError) as e:
            if not is_oom(e):
                raise
            failed = str(e).splitlines()[0][:200]
        # Outside the except block: the traceback (and the frames holding the failed step's
        # tensors) is gone, so the cache can really be emptied.
        free_cached_memory()
        if fallbacks.index + 1 >= len(fallbacks.plans):
            raise ResourceError(
                f"out of GPU memory even with the smallest plan ({fallbacks.describe(plan)}): "
                f"{failed}; free GPU memory or try --offload-blocks auto, --weights-dtype fp8, "
                "a smaller --tile-size or --tiled-vae")
        fallbacks.index += 1
        if fallbacks.index not in fallbacks._announced:
            fallbacks._announced.add(fallbacks.index)
            if say is not None:
                say(f"out of GPU memory with {fallbacks.describe(plan)}; retrying with "
                    f"{fallbacks.describe(fallbacks.plan)}")


def plain_call(fn: Callable[..., T], *args) -> T:
    """A model's ``guard`` when no session watches it: the call as it is."""
    return fn(*args)


class OOMGuard:
    """Out-of-memory recovery inside a streaming step, for calls that change no state until
    they return (a DiT block, a decoder layer, a convolution): a step as a whole cannot be run
    again without a copy of its streaming state (FlashVSR's KV caches are GiBs), but any one of
    these calls can. On CUDA out of memory the cache is freed, ``relieve()`` frees memory held
    elsewhere (it returns a line saying what it did, or None when nothing is left) and the same
    call runs again with the same inputs, so the frames do not change. Each saving is said
    once, as it is made. A model calls ``self.guard(fn, *args)`` where it would call
    ``fn(*args)``."""

    def __init__(self, relieve: Callable[[], str | None],
                 notice: Callable[[str], None] | None = None):
        self.relieve, self.notice = relieve, notice

    def __call__(self, fn: Callable[..., T], *args) -> T:
        while True:
            try:
                return fn(*args)
            except (torch.OutOfMemoryError, RuntimeError) as e:
                if not is_oom(e):
                    raise
                failed = str(e).splitlines()[0][:200]
            said = self.relieve()
            # outside the except block, where the failed call's tensors are gone: they and what
            # relieve() freed go back to the driver
            free_cached_memory()
            if said is None:
                raise ResourceError(
                    f"out of GPU memory with every memory saving this run can still make: "
                    f"{failed}; free GPU memory or plan smaller (--tile-size, "
                    "--weights-dtype fp8, --vram-budget)")
            if self.notice is not None:
                self.notice(said)
