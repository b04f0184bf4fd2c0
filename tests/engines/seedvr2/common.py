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
