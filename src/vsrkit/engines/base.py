"""The engine interface every model implements (DESIGN.md, "The engine interface").

An engine's only contract on time: N frames in, N frames out, same order. It never sees
files, containers or timestamps.

Frames in: ``(T, H, W, 3)`` host tensors, ``uint8`` (8-bit sources) or ``uint16`` (deeper
sources, full 16-bit scale). Frames out: ``(T, H_out, W_out, 3)``, float in [0, 1] on any
device (the sink quantizes once) or an integer dtype that the sink takes as is.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, TYPE_CHECKING, Any, Iterator

if TYPE_CHECKING:
    import torch

    from ..frames import StreamSpec
    from ..options import Options


@dataclass
class EnginePlan:
    """What an engine will do for one stream; printed by ``--dry-run`` and logged."""

    engine: str  # model id
    in_size: tuple[int, int]  # (H, W) of the frames pushed
    out_size: tuple[int, int]  # (H, W) of the frames returned
    device: str
    dtype: str
    details: dict[str, Any] = field(default_factory=dict)  # model-specific, human readable
    notes: list[str] = field(default_factory=list)  # what was applied and why
    est_gpu_bytes: int | None = None  # predicted peak device memory
    est_host_bytes: int | None = None  # predicted peak host memory of the engine
    est_seconds_per_frame: float | None = None
    latency_frames: int = 0  # frames an engine may hold before the first output
    # Segmented runs (resume, several devices): the absolute index of the first frame pushed.
    # Engines offset their noise by it (the noise convention indexes the whole video's latent
    # timeline), so a segment reproduces the frames of an unbroken run.
    start_frame: int = 0
    # Frames of context a segment needs before its first kept frame to rebuild the model's
    # state (KV cache, decoder memory, temporal batches); 0 for stateless engines.
    warmup_frames: int = 0
    # Frames after a segment's last kept frame that its outputs still depend on (the model's
    # look-ahead); a segment reads them so its last frames equal the unbroken run's.
    lookahead_frames: int = 0
    # A segment's first fed frame must be a multiple of this (FlashVSR: 8, its chunk grid), so
    # a segment groups frames into latents and chunks exactly as the unbroken run does.
    frame_align: int = 1

    def describe(self) -> list[str]:
        h, w = self.in_size
        ho, wo = self.out_size
        lines = [f"engine {self.engine} on {self.device} ({self.dtype}): {w}x{h} -> {wo}x{ho}"]
        lines += [f"  {k}: {v}" for k, v in self.details.items()]
        if self.est_gpu_bytes is not None:
            lines.append(f"  predicted peak GPU memory: {self.est_gpu_bytes / 2**30:.2f} GiB")
        if self.est_host_bytes is not None:
            lines.append(f"  predicted peak host memory: {self.est_host_bytes / 2**30:.2f} GiB")
        if self.est_seconds_per_frame is not None:
            lines.append(f"  predicted time: {self.est_seconds_per_frame:.3f} s/frame")
        lines += [f"  note: {n}" for n in self.notes]
        return lines


class EngineSession(ABC):
    """One stream through an opened engine. Holds the streaming state (caches, memories).
    ``notice``: where the session says what it changed on its own (the pipeline sets it), e.g.
    a smaller plan after running out of GPU memory."""

    notice: "Callable[[str], None] | None" = None

    def say(self, line: str) -> None:
        """``line`` through ``notice``, when the pipeline has set one."""
        if self.notice is not None:
            self.notice(line)

    @abstractmethod
    def push(self, frames: "torch.Tensor") -> Iterator["torch.Tensor"]:
        """Take ``(T, H, W, 3)`` frames; yield output batches that are final, in order."""

    @abstractmethod
    def flush(self) -> Iterator["torch.Tensor"]:
        """End of stream: yield every output not yet returned."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Free per-stream state (weights stay loaded in the engine)."""

    def move_state(self, device) -> None:  # noqa: B027 - optional hook
        """Move the stream's state (caches, memories) to ``device``: spatial tiles
        (``engines.tiles``) park a tile's on the host between its steps and bring it back."""


class Engine(ABC):
    """A model. Created once per ``Upscaler``; keeps weights loaded across streams."""

    name: str
    native_scale: int = 1

    @abstractmethod
    def plan(self, spec: "StreamSpec", opts: "Options") -> EnginePlan:
        """Sizes, multiples, memory and time for this stream. Raises before any heavy work."""

    @abstractmethod
    def open(self, plan: EnginePlan) -> EngineSession:
        """Start a stream; loads weights on first use and keeps them for later streams."""

    def weight_files(self) -> list:
        """The ``hub.WeightFile``s this engine (with its variant) needs; ``vsrkit models
        download`` fetches them and ``weights_status`` checks them."""
        return []

    def weights_status(self) -> str:
        """One line for ``vsrkit models``: whether the files are present."""
        files = self.weight_files()
        if not files:
            return "no weights needed"
        from .. import hub
        from ..errors import WeightsError

        try:
            hub.resolve(files, model_id=self.name, weights_dir=getattr(self, "weights_dir", None))
        except WeightsError:
            return f"missing: vsrkit models download {self.name}"
        return "present"

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release weights and device memory."""
