"""vsrkit: upscale and restore real videos with diffusion video super-resolution.

Public API: ``upscale``, ``upscale_folder``, ``Upscaler``, ``Options``, the error classes,
``CancelToken`` and ``Event``. See ``vsrkit.api`` for examples. Names are imported lazily so
that ``import vsrkit.errors`` (or the CLI's ``--help``) does not pull in torch and PyAV.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

# CUDA memory that a run frees on its way (DiT blocks moved to the host after running out of
# memory, a finished phase's buffers) must be reusable by one large tensor. Without expandable
# segments, freed weights stay as holes in allocator segments that live tensors share, and a
# 540 MiB decoder activation still failed with 2.4 GiB of weights freed (H200, capped
# allocator). Set before torch initialises CUDA; a user's own setting wins.
# Linux only: PyTorch warns that other platforms do not support it.
if sys.platform.startswith("linux"):
    os.environ.setdefault("PYTORCH_CUDA_ALLOC_CONF", "expandable_segments:True")

_EXPORTS = {
    "upscale": "api", "upscale_folder": "api", "Upscaler": "api", "make_options": "api",
    "BatchResult": "api", "Result": "run", "Options": "options", "CancelToken": "progress",
    "Event": "progress", "VsrkitError": "errors", "UsageError": "errors", "InputError": "errors",
    "OutputError": "errors", "WeightsError": "errors", "ResourceError": "errors",
    "Interrupted": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'vsrkit' has no attribute {name!r}")
