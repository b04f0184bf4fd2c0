"""Peak live tensor bytes of real model code run on the meta device (no memory, any size).

A dispatch mode registers the storage of every tensor an op returns and forgets it when the
storage dies (``weakref.finalize``): the peak of the sum is what ``torch.cuda.max_memory_allocated``
would see for those tensors, without kernel workspaces. Tensors made before the mode (weights)
are not counted. Used to check the planner's tensor model against the code (tests/estimate).
"""

from __future__ import annotations

import gc
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


class LiveBytes(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.live: dict[int, int] = {}
        self.now = 0
        self.peak = 0
        self.slack = 0

    def _free(self, key: int) -> None:
        self.now -= self.live.pop(key, 0)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and t.device.type == "meta":
                s = t.untyped_storage()
                key = id(s)
                if key not in self.live:
                    n = s.nbytes()
                    self.live[key] = n
                    self.now += n
                    weakref.finalize(s, self._free, key)
        if self.now > self.peak + self.slack:
            # Python decompositions of meta kernels leave tensors in reference cycles that a
            # CUDA run never makes: collect them before believing in a new peak
            gc.collect()
        if self.now > self.peak:
            self.peak = self.now
            self.slack = self.peak // 200  # peaks are exact to 0.5 %
        return out

    def reset_peak(self) -> None:
        gc.collect()
        self.peak = self.now
