"""Shared paths of the SeedVR2 tests."""

import os
from pathlib import Path

import pytest

PARITY = Path(os.environ.get("VSRKIT_PARITY_DIR",
                             Path(__file__).resolve().parents[3] / ".." / "shared" / "parity")) / "seedvr2"
TINY = PARITY / "weights" / "tiny"
DATA = Path(__file__).parent / "data"


def need_parity():
    if not (PARITY / "cases.json").is_file():
        pytest.skip(f"no SeedVR2 parity goldens at {PARITY} (set VSRKIT_PARITY_DIR)")
