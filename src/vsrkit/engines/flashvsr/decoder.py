"""What FlashVSR's streaming session asks of a decoder (TCDecoder for tiny and tiny-long, the
Wan2.1 VAE for full): turn one step's clean latents into frames, keeping its own state between
steps so that step 0 (6 latents) gives 21 frames and every later step (2 latents) gives 8."""

from __future__ import annotations

from typing import Protocol

import torch


class FrameDecoder(Protocol):
    needs_lq: bool  # whether decode() reads the LQ frames (else the session passes None)

    def reset(self) -> None:
        """Forget the stream: the next decode() is a stream's first."""

    def decode(self, latents: torch.Tensor, lq: torch.Tensor | None) -> torch.Tensor:
        """latents (T, 16, h, w); lq (1, 3, 4T, 8h, 8w) in [-1, 1], groups of 4 aligned with the
        latents (the first group is frame 0 repeated), or None when ``needs_lq`` is False.
        Returns (4T - 3 on a stream's first call, else 4T, 3, 8h, 8w) in [-1, 1]."""
        ...
