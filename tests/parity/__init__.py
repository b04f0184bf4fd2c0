"""Where the parity material lives: the project's shared folder next to the clone
(``../shared/parity``: SeedVR2 goldens on tiny random weights in the official layout, FlashVSR
full-size key manifests), or ``VSRKIT_PARITY_DIR``. Weights are not committed here; the tests
that need the material skip, saying where they looked, when it is absent."""

import os
from pathlib import Path

PARITY_ROOT = Path(os.environ.get("VSRKIT_PARITY_DIR",
                                  Path(__file__).resolve().parents[2] / ".." / "shared" / "parity"))
