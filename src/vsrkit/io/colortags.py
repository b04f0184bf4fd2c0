"""Color tags between FFmpeg's integer code points (ITU-T H.273, what codec contexts hold) and
FFmpeg's names (what ``ColorTags`` and ``vsrkit probe`` show): one table per kind."""

from __future__ import annotations

import struct
from dataclasses import dataclass
from fractions import Fraction

from ..frames import ColorTags

PRIMARIES = {1: "bt709", 4: "bt470m", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m", 8: "film",
             9: "bt2020", 10: "smpte428", 11: "smpte431", 12: "smpte432", 22: "ebu3213"}
TRANSFERS = {1: "bt709", 4: "gamma22", 5: "gamma28", 6: "smpte170m", 7: "smpte240m",
             8: "linear", 9: "log100", 10: "log316", 11: "iec61966-2-4", 12: "bt1361e",
             13: "iec61966-2-1", 14: "bt2020-10", 15: "bt2020-12", 16: "smpte2084",
             17: "smpte428", 18: "arib-std-b67"}
MATRICES = {0: "gbr", 1: "bt709", 4: "fcc", 5: "bt470bg", 6: "smpte170m", 7: "smpte240m",
            8: "ycgco", 9: "bt2020nc", 10: "bt2020c", 11: "smpte2085", 12: "chroma-derived-nc",
            13: "chroma-derived-c", 14: "ictcp"}
RANGES = {1: "tv", 2: "pc"}
# matrices swscale converts with (others are written as BT.709, with a notice)
SWSCALE_MATRICES = {1, 4, 5, 6, 7, 9, 10}

_TABLES = {"primaries": PRIMARIES, "transfer": TRANSFERS, "matrix": MATRICES, "range": RANGES}


def name_of(kind: str, code) -> str | None:
    """Code point -> FFmpeg name; unspecified (2, 0 for ranges) or unknown -> None."""
    try:
        return _TABLES[kind].get(int(code))
    except (TypeError, ValueError):
        return None


def code_of(kind: str, name: str | None) -> int | None:
    """FFmpeg name -> code point (None for None or an unknown name)."""
    if name is None:
        return None
    for code, n in _TABLES[kind].items():
        if n == name:
            return code
    return None


def tags_of(cc) -> ColorTags:
    """The tags of a codec context or a frame (both carry the four integer fields)."""
    return ColorTags(primaries=name_of("primaries", cc.color_primaries),
                     transfer=name_of("transfer", cc.color_trc),
                     matrix=name_of("matrix", cc.colorspace),
                     range=name_of("range", cc.color_range))


@dataclass(frozen=True)
class HdrMetadata:
    """HDR10 static metadata as FFmpeg hands it over on decoded frames: the mastering display
    (chromaticities x, y as fractions; luminance in cd/m²) and the content light level."""

    primaries: tuple[tuple[Fraction, Fraction], ...] | None = None  # R, G, B
    white_point: tuple[Fraction, Fraction] | None = None
    luminance: tuple[Fraction, Fraction] | None = None  # (min, max)
    max_cll: int | None = None  # cd/m²
    max_fall: int | None = None

    def x265_params(self) -> list[str]:
        """x265's units: chromaticity in 1/50000, luminance in 1/10000 cd/m², order G B R."""
        out = []
        if self.primaries and self.white_point and self.luminance:
            r, g, b = self.primaries

            def xy(p):
                return f"({round(p[0] * 50000)},{round(p[1] * 50000)})"

            lo, hi = self.luminance
            out.append(f"master-display=G{xy(g)}B{xy(b)}R{xy(r)}WP{xy(self.white_point)}"
                       f"L({round(hi * 10000)},{round(lo * 10000)})")
        if self.max_cll is not None:
            out.append(f"max-cll={self.max_cll},{self.max_fall or 0}")
        return out

    def svtav1_params(self) -> list[str]:
        """SVT-AV1's: the same fields as decimals."""
        out = []
        if self.primaries and self.white_point and self.luminance:
            r, g, b = self.primaries

            def xy(p):
                return f"({float(p[0]):.4f},{float(p[1]):.4f})"

            lo, hi = self.luminance
            out.append(f"mastering-display=G{xy(g)}B{xy(b)}R{xy(r)}WP{xy(self.white_point)}"
                       f"L({float(hi):.4f},{float(lo):.4f})")
        if self.max_cll is not None:
            out.append(f"content-light={self.max_cll},{self.max_fall or 0}")
        return out


def _side_data(frame):
    """A frame's side data entries. PyAV 19 made ``frame.side_data`` a plain Mapping (iterating
    gives the types); earlier versions iterate over the entries themselves."""
    container = frame.side_data
    for item in container:
        yield item if hasattr(item, "type") else container[item]


def hdr_of(frame) -> HdrMetadata | None:
    """Read AVMasteringDisplayMetadata (10 AVRationals, has_primaries, has_luminance) and
    AVContentLightMetadata (two unsigned ints) from a frame's side data."""
    mastering = light = None
    for sd in _side_data(frame):
        name = getattr(sd.type, "name", str(sd.type))
        if name == "MASTERING_DISPLAY_METADATA":
            mastering = bytes(sd)
        elif name == "CONTENT_LIGHT_LEVEL":
            light = bytes(sd)
    if mastering is None and light is None:
        return None
    fields: dict = {}
    if mastering is not None and len(mastering) >= 88:
        v = struct.unpack("<20i2i", mastering[:88])
        q = [Fraction(v[i], v[i + 1]) if v[i + 1] else Fraction(0) for i in range(0, 20, 2)]
        has_primaries, has_luminance = v[20], v[21]
        if has_primaries:
            fields.update(primaries=((q[0], q[1]), (q[2], q[3]), (q[4], q[5])),
                          white_point=(q[6], q[7]))
        if has_luminance:
            fields.update(luminance=(q[8], q[9]))
    if light is not None and len(light) >= 8:
        fields["max_cll"], fields["max_fall"] = struct.unpack("<2I", light[:8])
    return HdrMetadata(**fields) if fields else None
