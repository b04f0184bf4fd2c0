"""``--compile``: each transformer block's forward under ``torch.compile``, for both DiTs.

Blocks, not the whole model: every block of a DiT runs the same code on tensors of the same
shapes, so dynamo traces one graph and the 30-32 block instances reuse it (nn.Module
parameters are graph inputs); the streaming loop around the blocks (KV cache, LCSA block
choice, windows) stays eager, where its Python decisions belong. FlexAttention is compiled on
its own and kept out of these graphs (``ops/attention.py``). Measured on an H100 (FlashVSR Tiny,
1408x768): DiT 2.39 -> 1.79 s per 101 frames, 27.3 -> 30.4 FPS end to end
(docs/performance.md).

Compiled code is cached on disk (inductor's FX graph and kernel caches) under
``$VSRKIT_CACHE/inductor`` (default ``~/.cache/vsrkit/inductor``), so only the first run on a
machine pays the compile; ``dynamic=False`` and a recompile limit above the handful of shapes a
stream meets (first step, KV cache filling, steady state) keep later steps from recompiling.
"""

from __future__ import annotations

import os
from pathlib import Path

# shapes one stream meets per compiled function: FlashVSR's first step and KV cache growing to
# its cap (kv_ratio + 1 groups), SeedVR2's window layouts per batch size; well above both
RECOMPILE_LIMIT = 64
_FLAG = "_vsrkit_compiled"


def cache_dir() -> Path:
    root = os.environ.get("VSRKIT_CACHE") or Path.home() / ".cache" / "vsrkit"
    return Path(root) / "inductor"


def set_compiled(blocks, on: bool) -> None:
    """Compile (``on``) or restore (not ``on``) the forward of every module in ``blocks``;
    idempotent, so a model kept loaded across videos is compiled once."""
    import torch

    if on:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str(cache_dir()))
        for knob in ("recompile_limit", "cache_size_limit"):
            if hasattr(torch._dynamo.config, knob):
                setattr(torch._dynamo.config, knob,
                        max(getattr(torch._dynamo.config, knob), RECOMPILE_LIMIT))
    for b in blocks:
        if on and not getattr(b, _FLAG, False):
            b.forward = torch.compile(b.forward, dynamic=False)
            setattr(b, _FLAG, True)
        elif not on and getattr(b, _FLAG, False):
            del b.forward  # the instance attribute: the class's forward again
            setattr(b, _FLAG, False)
