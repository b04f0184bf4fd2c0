"""Color tags between FFmpeg's integer code points (ITU-T H.273, what codec contexts hold) and
FFmpeg's names (what ``ColorTags`` and ``vsrkit probe`` show): one table per kind."""

from __future__ import annotations

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
