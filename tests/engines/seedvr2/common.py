"""Shared paths of the SeedVR2 tests."""

from pathlib import Path

import pytest

from tests.parity import PARITY_ROOT

PARITY = PARITY_ROOT / "seedvr2"
TINY = PARITY / "weights" / "tiny"
DATA = Path(__file__).parent / "data"


def need_parity():
    if not (PARITY / "cases.json").is_file():
        pytest.skip(f"no SeedVR2 parity goldens at {PARITY} (set VSRKIT_PARITY_DIR)")


def tiny_stream(n: int, device: str = "cpu", dtype: str = "fp32"):
    """``(frames, options)`` for the tiny 3B checkpoint: ``n`` random 40x24 frames and the
    options that run them in batches of 5 without overlap or colour fix (skips without the
    parity folder)."""
    import torch

    need_parity()
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (n, 24, 40, 3), generator=g, dtype=torch.uint8)
    return frames, dict(model="seedvr2-3b-tiny", weights=str(TINY), device=device, dtype=dtype,
                        seed=3, color_fix="none", batch_frames=5, temporal_overlap=0)
