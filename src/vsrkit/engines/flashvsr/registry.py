"""FlashVSR model ids (no torch import: the CLI lists these cheaply)."""

from ..__init__ import ModelEntry

MODELS = [
    ModelEntry("flashvsr-v1.1", "flashvsr", "flashvsr:FlashVSREngine",
               "FlashVSR v1.1: one-step streaming 4x diffusion VSR (variants tiny, tiny-long, "
               "full = Wan2.1 VAE decoder)",
               {"version": "v1.1"}),
    ModelEntry("flashvsr-v1", "flashvsr", "flashvsr:FlashVSREngine",
               "FlashVSR v1 (buffer LQ projector; tiny, tiny-long, full)", {"version": "v1"}),
]
