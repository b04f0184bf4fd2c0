"""The noise convention (DESIGN.md, "Randomness"): latent frame ``t`` of the whole video's
latent timeline draws from a CPU generator seeded with ``seed + offset + t``, over one latent
frame of the full padded canvas. Tiles slice it; temporal batches index it by absolute ``t``.
So a run is the same on any device, however it is tiled or segmented.
"""

from __future__ import annotations

from typing import Iterable

import torch

AUGMENT_OFFSET = 1_000_000  # augmentation / condition noise
POSTERIOR_OFFSET = 2_000_000  # VAE posterior sample


def latent_noise(seed: int, frames: Iterable[int], shape: tuple[int, int, int], *,
                 offset: int = 0, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(T, C, H, W)`` noise for the absolute latent frame indices ``frames``.

    ``shape`` is one latent frame ``(C, H, W)`` of the full padded canvas.
    """
    out = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(seed + offset + t),
                       dtype=torch.float32) for t in frames]
    if not out:
        return torch.empty((0, *shape), dtype=dtype, device=device)
    return torch.stack(out).to(device=device, dtype=dtype)
