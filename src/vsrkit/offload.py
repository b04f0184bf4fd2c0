"""Block swap: keep the weights of N transformer blocks in pinned host memory and stream each
to the GPU just before it runs, on a side CUDA stream, so the copy hides behind the previous
block's compute (``--offload-blocks N|auto``).

How it works. The last N blocks of ``blocks`` are "host blocks". Each has one flat pinned
buffer holding all its parameters and buffers (one DMA per block). The GPU holds
``min(N, 2)`` flat slots the size of the largest host block. A forward pre-hook on every block
(1) makes sure the block about to run is in a slot (waiting for its copy on the compute
stream), points its tensors' ``.data`` at the slot, and (2) starts copying the next host block
(in block order, wrapping around to the next pass) into the other slot. A forward hook points
the block back at its host buffer and records that its slot may be overwritten once the
compute stream has finished with it. GPU memory saved: the host blocks minus the two slots,
so N <= 2 saves nothing.

On CPU there is nothing to save: ``resolve_offload_blocks`` gives 0 there, and
``BlockSwap(blocks, 0, device)`` installs nothing. An explicit ``BlockSwap`` on CPU still runs
the same hooks with plain copies (this is what the CPU tests check).

Order in an engine: build, load, ``quant.quantize_linears`` (the swap tracks the tensors it
finds, so swap modules first), move the rest of the model to the device, then ``BlockSwap``.
``torch.compile``: the hooks re-point tensors between calls, so compile each block's forward
(the hot function), not the model around the hooks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import nn

from .errors import UsageError

# Every tensor starts on a 256-byte boundary inside the flat buffers: vectorized kernels and
# cuBLAS want aligned pointers, and a view of another dtype needs its element alignment.
_ALIGN = 256
# Slots on the GPU: one for the block that runs, one for the block being copied in.
_MAX_SLOTS = 2


def _align(n: int) -> int:
    return -(-n // _ALIGN) * _ALIGN


def _unique_tensors(block: nn.Module) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    for t in list(block.parameters()) + list(block.buffers()):
        seen.setdefault(id(t), t)
    return list(seen.values())


@dataclass
class _Layout:
    tensors: list[torch.Tensor]  # the block's tensors; their .data is re-pointed
    offsets: list[int]  # byte offsets in the flat buffers
    nbytes: int

    @classmethod
    def of(cls, block: nn.Module) -> "_Layout":
        tensors, offsets, pos = _unique_tensors(block), [], 0
        for t in tensors:
            offsets.append(pos)
            pos += _align(t.numel() * t.element_size())
        return cls(tensors, offsets, pos)

    def views(self, flat: torch.Tensor) -> list[torch.Tensor]:
        """Views of ``flat`` (uint8) shaped and typed like the block's tensors."""
        out = []
        for t, off in zip(self.tensors, self.offsets):
            n = t.numel() * t.element_size()
            out.append(flat[off:off + n].view(t.dtype).view(t.shape))
        return out


def _bind(tensors: Sequence[torch.Tensor], views: Sequence[torch.Tensor]) -> None:
    for t, v in zip(tensors, views):
        t.data = v


class _Slot:
    def __init__(self, nbytes: int, device: torch.device):
        self.buf = torch.empty(nbytes, dtype=torch.uint8, device=device)
        self.owner: int | None = None  # block index whose weights the slot holds
        self.views: dict[int, list[torch.Tensor]] = {}  # per block, built once
        cuda = device.type == "cuda"
        self.ready = torch.cuda.Event() if cuda else None  # copy into the slot finished
        self.free = torch.cuda.Event() if cuda else None  # compute on the slot finished


class BlockSwap:
    """Keep the last ``n_on_host`` of ``blocks`` in (pinned) host memory and stream them to
    ``device`` ahead of use. Resident blocks are moved to ``device``; move the rest of the
    model first (a later ``model.to(device)`` would pull the host blocks back). ``trace``, if
    a list, receives ``("copy", block, slot)``, ``("run", block, slot|None)`` and
    ``("done", block)`` events in the order they are issued."""

    def __init__(self, blocks: nn.ModuleList, n_on_host: int, device: torch.device | str, *,
                 trace: list | None = None):
        self.device = torch.device(device)
        n = len(blocks)
        if not 0 <= n_on_host <= n:
            raise UsageError(f"--offload-blocks {n_on_host}: the model has {n} blocks")
        self.blocks, self.n_on_host, self.trace = blocks, n_on_host, trace
        self.host = list(range(n - n_on_host, n))  # indices of host blocks, in order
        self._hooks: list = []
        self._layouts: dict[int, _Layout] = {}
        self._host_buf: dict[int, torch.Tensor] = {}
        self._host_views: dict[int, list[torch.Tensor]] = {}
        self.slots: list[_Slot] = []
        self._running: _Slot | None = None  # slot of the host block inside its forward
        cuda = self.device.type == "cuda"
        self._copy_stream = torch.cuda.Stream(self.device) if cuda and n_on_host else None

        for i in range(n - n_on_host):
            blocks[i].to(self.device)
        if not n_on_host:
            return
        for i in self.host:
            lay = _Layout.of(blocks[i])
            if any(t.is_meta for t in lay.tensors):
                raise ValueError(f"block {i} is on the meta device: load weights before BlockSwap")
            buf = torch.empty(lay.nbytes, dtype=torch.uint8, pin_memory=cuda)
            views = lay.views(buf)
            for v, t in zip(views, lay.tensors):
                v.copy_(t.detach())
            _bind(lay.tensors, views)  # the device copies (if any) are freed here
            self._layouts[i], self._host_buf[i], self._host_views[i] = lay, buf, views
        slot_bytes = max(lay.nbytes for lay in self._layouts.values())
        self.slots = [_Slot(slot_bytes, self.device) for _ in range(min(n_on_host, _MAX_SLOTS))]
        for i, block in enumerate(blocks):
            self._hooks.append(block.register_forward_pre_hook(functools.partial(self._pre, i)))
            if i in self._layouts:
                self._hooks.append(block.register_forward_hook(functools.partial(self._post, i)))

    # -- sizes -------------------------------------------------------------------------------
    @property
    def host_bytes(self) -> int:
        return sum(lay.nbytes for lay in self._layouts.values())

    @property
    def slot_bytes(self) -> int:
        return sum(s.buf.numel() for s in self.slots)

    def describe(self) -> str:
        if not self.n_on_host:
            return "block swap: off"
        mib = 2**20
        return (f"block swap: {self.n_on_host} of {len(self.blocks)} blocks on the host "
                f"({self.host_bytes / mib:.0f} MiB{' pinned' if self._copy_stream else ''}), "
                f"{len(self.slots)} GPU slots of {self.slots[0].buf.numel() / mib:.0f} MiB")

    # -- hooks ---------------------------------------------------------------------------------
    def _log(self, *event) -> None:
        if self.trace is not None:
            self.trace.append(event)

    def _slot_of(self, i: int) -> _Slot | None:
        return next((s for s in self.slots if s.owner == i), None)

    def _next_host(self, i: int) -> int:
        """The host block that runs after block ``i`` (wrapping to the next pass)."""
        return next((j for j in self.host if j > i), self.host[0])

    def _load(self, j: int, avoid: _Slot | None) -> _Slot | None:
        free = [s for s in self.slots if s is not avoid]
        if not free:
            return None
        slot = next((s for s in free if s.owner is None), free[0])
        src = self._host_buf[j]
        if self._copy_stream is not None:
            with torch.cuda.stream(self._copy_stream):
                # Overwrite only after the compute stream has finished with the last occupant.
                self._copy_stream.wait_event(slot.free)
                slot.buf[: src.numel()].copy_(src, non_blocking=True)
                slot.ready.record(self._copy_stream)
        else:
            slot.buf[: src.numel()].copy_(src)
        slot.owner = j
        self._log("copy", j, self.slots.index(slot))
        return slot

    def _pre(self, i: int, module: nn.Module, args) -> None:
        slot = None
        if i in self._layouts:
            slot = self._slot_of(i) or self._load(i, avoid=None)
            if slot.ready is not None:
                torch.cuda.current_stream(self.device).wait_event(slot.ready)
            if i not in slot.views:
                slot.views[i] = self._layouts[i].views(slot.buf)
            _bind(self._layouts[i].tensors, slot.views[i])
            self._running = slot
        self._log("run", i, None if slot is None else self.slots.index(slot))
        # Prefetch: the next host block starts copying while this one computes.
        j = self._next_host(i)
        if j != i and self._slot_of(j) is None:
            self._load(j, avoid=slot)

    def _post(self, i: int, module: nn.Module, args, output) -> None:
        slot = self._running
        if slot is not None and slot.free is not None:
            slot.free.record(torch.cuda.current_stream(self.device))
        _bind(self._layouts[i].tensors, self._host_views[i])
        self._running = None
        self._log("done", i)

    def close(self) -> None:
        """Remove the hooks. Host blocks keep their weights in host memory, also a block whose
        forward failed (out of memory) while bound to a GPU slot."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()
        if self._copy_stream is not None:
            torch.cuda.current_stream(self.device).wait_stream(self._copy_stream)
        if self._running is not None and self._running.owner in self._layouts:
            i = self._running.owner
            _bind(self._layouts[i].tensors, self._host_views[i])
            self._running = None
        self.slots = []


# -- how many blocks -----------------------------------------------------------------------------

def swap_gpu_bytes(block_bytes: Sequence[int], n_on_host: int) -> int:
    """GPU bytes of the blocks' weights with the last ``n_on_host`` on the host: the resident
    blocks plus ``min(n, 2)`` slots the size of the largest host block."""
    k = len(block_bytes) - n_on_host
    host = block_bytes[k:]
    return sum(block_bytes[:k]) + min(n_on_host, _MAX_SLOTS) * max(host, default=0)


def blocks_on_host(block_bytes: Sequence[int], other_bytes: int, budget: int | None) -> int:
    """Smallest N whose predicted peak (``other_bytes``, everything but the blocks' weights,
    plus ``swap_gpu_bytes``) fits ``budget``: 0 when everything fits or there is no budget,
    all blocks when nothing fits (the planner then looks for other savings)."""
    if budget is None:
        return 0
    for n in range(len(block_bytes) + 1):
        if other_bytes + swap_gpu_bytes(block_bytes, n) <= budget:
            return n
    return len(block_bytes)


def resolve_offload_blocks(text: str, *, block_bytes: Sequence[int], other_bytes: int,
                           budget: int | None, device: torch.device | str) -> int:
    """``--offload-blocks`` (``N`` or ``auto``) -> a count. CPU devices: always 0."""
    if torch.device(device).type != "cuda":
        return 0
    if text == "auto":
        return blocks_on_host(block_bytes, other_bytes, budget)
    if not text.isdigit():
        raise UsageError(f"--offload-blocks {text!r}: must be a count or auto")
    n = int(text)
    if n > len(block_bytes):
        raise UsageError(f"--offload-blocks {n}: the model has {len(block_bytes)} blocks")
    return n


def move_tensors(obj, device: torch.device | str):
    """``obj`` with every tensor in it (nested lists, tuples, dicts) moved to ``device``; other
    values as they are. From a GPU to the host the copies are asynchronous into pinned memory
    (``non_blocking``), ordered on the stream before any later use; a view is copied alone, not
    its whole storage."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, (list, tuple)):
        return type(obj)(move_tensors(x, device) for x in obj)
    if isinstance(obj, dict):
        return {k: move_tensors(v, device) for k, v in obj.items()}
    return obj


# -- whole modules parked on the host between uses (--unload-dit) ---------------------------------

class ParkedWeights:
    """Move a module's weights off ``device`` while another model runs, and back before it runs.

    Weights never change during inference, so the host copy is made once (pinned, on CUDA):
    ``park()`` points the module's tensors at it and drops the device copies (nothing is copied
    back), ``unpark()`` is one host-to-device copy per tensor. Only tensors found on ``device``
    when built are handled, so blocks another mechanism keeps on the host (``BlockSwap``) are
    left alone. On a CPU device the host copy is a second buffer: the same steps run (tests) but
    save nothing; engines plan it off there.
    """

    def __init__(self, module: nn.Module, device: torch.device | str):
        self.device = torch.device(device)
        self.tensors = [t for t in _unique_tensors(module) if t.device == self.device]
        pin = self.device.type == "cuda"
        self.host = [torch.empty(t.shape, dtype=t.dtype, pin_memory=pin).copy_(t.detach())
                     for t in self.tensors]
        self.parked = False

    @classmethod
    def of(cls, module: nn.Module, device: torch.device | str) -> "ParkedWeights":
        """The module's one ``ParkedWeights`` for ``device``: sessions sharing a module (DiT
        tiles, streams of one engine) share its host copy instead of pinning one each."""
        found = module.__dict__.get("_parked_weights")
        if found is None or found.device != torch.device(device):
            found = cls(module, device)
            module.__dict__["_parked_weights"] = found
        return found

    @property
    def nbytes(self) -> int:
        return sum(h.numel() * h.element_size() for h in self.host)

    def park(self) -> None:
        if not self.parked:
            _bind(self.tensors, self.host)
            self.parked = True

    def unpark(self) -> None:
        if self.parked:
            _bind(self.tensors, [h.to(self.device, non_blocking=True, copy=True) for h in self.host])
            self.parked = False
