"""SeedVR2 model ids (no torch import: the CLI lists these cheaply)."""

from ..__init__ import ModelEntry

_T = "seedvr2:SeedVR2Engine"
MODELS = [
    ModelEntry("seedvr2-3b", "seedvr2", _T,
               "SeedVR2 3B: one-step diffusion video restoration/upscaling (any scale)",
               {"size": "3b"}),
    ModelEntry("seedvr2-7b", "seedvr2", _T, "SeedVR2 7B (higher quality, about 2x the cost)",
               {"size": "7b"}),
    ModelEntry("seedvr2-7b-sharp", "seedvr2", _T, "SeedVR2 7B, the community 'sharp' checkpoint",
               {"size": "7b", "sharp": True}),
    # test configurations: the official file names and layout with tiny random weights; they
    # fix what no tensor shape holds (the VAE's GroupNorm groups)
    ModelEntry("seedvr2-3b-tiny", "seedvr2", _T, "SeedVR2 3B layout, tiny (tests)",
               {"size": "3b", "vae_groups": 4}, hidden=True),
    ModelEntry("seedvr2-7b-tiny", "seedvr2", _T, "SeedVR2 7B layout, tiny (tests)",
               {"size": "7b", "vae_groups": 4}, hidden=True),
]
