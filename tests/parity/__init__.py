"""Where the parity material lives.

The authoritative copy is the project's shared folder (``../shared/parity`` next to the clone,
or ``VSRKIT_PARITY_DIR``); ``tests/parity/`` holds a copy of it (SeedVR2 goldens on tiny random
weights, FlashVSR full-size key manifests) so a clean clone runs the parity tests anywhere,
CI included. A shared folder, when present, wins: it may hold newer material.
"""

import os
from pathlib import Path

_HERE = Path(__file__).resolve().parent


def parity_root() -> Path:
    if "VSRKIT_PARITY_DIR" in os.environ:
        return Path(os.environ["VSRKIT_PARITY_DIR"])
    shared = _HERE.parents[1] / ".." / "shared" / "parity"
    if (shared / "seedvr2" / "cases.json").is_file():
        return shared
    return _HERE


PARITY_ROOT = parity_root()
