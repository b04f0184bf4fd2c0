"""Where a DiT's weights live, for both models: FP8 linears in the blocks
(``--weights-dtype fp8``, ``quant.FP8Linear``) and blocks kept on the host and streamed in
(``--offload-blocks N``, ``offload.BlockSwap``).

An engine calls ``weight_settings`` in ``plan()`` (the settings go into the plan's details, where
the memory estimate and the planner read them, so a plan the planner picks for a budget is the
plan that runs), ``quantize_blocks`` between building the DiT on the meta device and loading
its checkpoint, and ``place`` instead of ``dit.to(device)``: the host blocks never visit the
GPU, so a model that does not fit is never whole on it. Both settings are part of the loaded
model's identity (an engine reloads when they change): FP8 replaces modules, a swap owns pinned
buffers.
"""

from __future__ import annotations

import torch
from torch import nn

from .errors import UsageError

# the compute dtypes a ``--weights-dtype`` other than auto/fp8 must equal (weights are stored in
# the compute dtype; fp8 is the one smaller storage)
_NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


def weight_settings(opts, device: torch.device, dtype: torch.dtype, n_blocks: int | None
                    ) -> tuple[dict, list[str]]:
    """``({"offload_blocks": N, "weights_dtype": "fp8" | None}, notes)`` for a plan.
    ``--offload-blocks auto`` is 0 here: the planner (``plan.choose_plan``) tries counts when
    the plan as asked does not fit the budget."""
    notes = []
    wd = opts.weights_dtype
    if wd not in ("auto", "fp8") and wd != _NAMES[dtype]:
        raise UsageError(f"--weights-dtype {wd} with --dtype {_NAMES[dtype]}: weights are kept "
                         "in the compute dtype; fp8 is the smaller storage")
    fp8 = wd == "fp8"
    if fp8:
        # measured on an H200 (docs/performance.md): eager FP8 0.84x bf16's FPS (its activation
        # quantization runs unfused), under --compile 1.07x at 1080p
        slow = device.type == "cuda" and not getattr(opts, "compile", False)
        notes.append("DiT block linears in FP8 e4m3 (per-channel scales)"
                     + ("" if device.type == "cuda" else ", dequantized on the fly")
                     + ("; add --compile: eager FP8 is slower than bf16" if slow else ""))
    n = int(opts.offload_blocks) if opts.offload_blocks.isdigit() else 0
    if n and n_blocks is not None and n > n_blocks:
        raise UsageError(f"--offload-blocks {n}: the model has {n_blocks} blocks")
    if n and opts.unload_dit:
        raise UsageError("--offload-blocks with --unload-dit: choose one (--unload-dit parks "
                         "the whole DiT while decoding, --offload-blocks streams its blocks)")
    if n:
        notes.append(f"{n} of {n_blocks} DiT blocks on the host, streamed in ahead of use"
                     + ("" if device.type == "cuda" else " (saves nothing on the CPU)"))
    return {"offload_blocks": n, "weights_dtype": "fp8" if fp8 else None}, notes


def quantize_blocks(blocks: nn.Module, weights_dtype: str | None, dtype: torch.dtype) -> None:
    """FP8 linears in ``blocks`` (meta modules, before the checkpoint is loaded into them)."""
    if weights_dtype == "fp8":
        from .quant import quantize_linears

        quantize_linears(blocks, dtype=dtype)


def place(model: nn.Module, blocks: nn.ModuleList, device: torch.device, n_on_host: int):
    """``model`` on ``device`` except the last ``n_on_host`` of ``blocks``, which a
    ``BlockSwap`` (returned; ``None`` without one) keeps in host memory."""
    from .offload import BlockSwap

    if not n_on_host:
        model.to(device)
        return None
    host = {id(b) for b in list(blocks)[len(blocks) - n_on_host:]}

    def move(m: nn.Module) -> None:
        m._apply(lambda t: t.to(device), recurse=False)
        for child in m.children():
            if id(child) not in host:
                move(child)

    move(model)
    return BlockSwap(blocks, n_on_host, device)


def offload_more(model: nn.Module, blocks: nn.ModuleList, device: torch.device, n_on_host: int):
    """Mid-run: the last ``n_on_host`` of ``blocks`` to host memory (more than now), replacing
    ``model.swap``; their GPU copies are freed. Used when a run is out of memory after all
    (``memory.OOMGuard``); the blocks' values do not change, so neither do the frames."""
    from .offload import BlockSwap

    old = getattr(model, "swap", None)
    if old is not None:
        old.close()  # hooks off; its host blocks stay in host memory
    model.swap = BlockSwap(blocks, n_on_host, device)
    return model.swap


def on_host(model: nn.Module) -> int:
    """How many of the model's DiT blocks are kept in host memory now."""
    swap = getattr(model, "swap", None)
    return swap.n_on_host if swap is not None else 0


def offload_relief(model: nn.Module, blocks: nn.ModuleList, device: torch.device,
                   blocked: bool = False) -> str | None:
    """``memory.OOMGuard``'s saving for a DiT, shared by both engines: half, then all, of its
    blocks to host memory, streamed in ahead of use (slower; the frames do not change).
    Returns the line to say, or None when all are there already or ``blocked`` (FlashVSR's
    --unload-dit parks the DiT whole, which a block swap cannot join)."""
    n, now = len(blocks), on_host(model)
    more = next((k for k in (n // 2, n) if k > now), None)
    if more is None or blocked:
        return None
    offload_more(model, blocks, device, more)
    return (f"out of GPU memory; continuing with {more} of {n} DiT blocks in host memory "
            f"(like --offload-blocks {more}: slower, same frames)")
