"""What travels beside frames: per-frame timing and the description of a video stream.

Timestamps never enter an engine; the pipeline pairs output frame i with input frame i's
``FrameInfo``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction


@dataclass(frozen=True)
class FrameInfo:
    index: int  # 0-based position in the decoded (and --frames/--start trimmed) stream
    pts: int | None  # presentation timestamp in time_base units, as the container gave it
    time_base: Fraction
    duration: int | None = None  # in time_base units, when the container knows it

    @property
    def seconds(self) -> float | None:
        return None if self.pts is None else float(self.pts * self.time_base)


@dataclass(frozen=True)
class ColorTags:
    """FFmpeg's names (e.g. 'bt709', 'smpte2084', 'tv'); None = unspecified."""

    primaries: str | None = None
    transfer: str | None = None
    matrix: str | None = None
    range: str | None = None  # 'tv' (limited) or 'pc' (full)


@dataclass(frozen=True)
class StreamSpec:
    """The video stream a source delivers (after rotation is *not* applied: frames stay as
    stored and the rotation tag is carried to the output)."""

    width: int
    height: int
    frame_rate: Fraction  # average/nominal rate, exact rational (30000/1001 stays so)
    time_base: Fraction
    frames: int | None  # count, when known before decoding (None: unknown until the end)
    bit_depth: int = 8  # 8 -> frames are uint8, >8 -> uint16 (values scaled to 16 bits)
    pix_fmt: str | None = None  # source pixel format, e.g. 'yuv420p10le'
    codec: str | None = None
    color: ColorTags = field(default_factory=ColorTags)
    rotation: int = 0  # degrees, counter-clockwise, as in the display matrix
    sample_aspect_ratio: Fraction | None = None
    vfr: bool = False  # timestamps are not a constant step
    duration: float | None = None  # seconds
    is_image_sequence: bool = False
