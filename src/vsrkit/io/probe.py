"""``vsrkit probe``: what a file holds, as a JSON-able dict (``--json``) or a readable table."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av

from ..errors import InputError
from ..options import Options
from .colortags import tags_of
from .source import _bit_depth, _stated_duration, is_image_sequence, open_source


def probe(path: str | os.PathLike) -> dict:
    """Container, duration, streams (codec, size, fps, frames, bit depth, color, rotation, SAR,
    audio rate and layout, language), chapters and global metadata. Values are str, int, float,
    bool, None, lists and dicts only (fractions as 'num/den' strings)."""
    p = Path(path)
    if is_image_sequence(p):
        with open_source(p, Options()) as src:
            s = src.spec
            return {"path": str(p), "container": "image sequence", "duration": s.duration,
                    "bit_rate": None,
                    "streams": [{"index": 0, "type": "video", "codec": "image",
                                 "width": s.width, "height": s.height, "pix_fmt": s.pix_fmt,
                                 "bit_depth": s.bit_depth, "fps": str(s.frame_rate),
                                 "frames": s.frames, "vfr": False, "rotation": 0}],
                    "chapters": [], "metadata": {}}
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        c = av.open(str(p))
    except av.error.FFmpegError as e:
        raise InputError(f"{p}: not a media file PyAV/FFmpeg can read ({e})") from None
    with c:
        streams = [_stream(s) for s in c.streams]
        info = {"path": str(p), "container": c.format.name,
                "duration": c.duration / 1e6 if c.duration else None,
                "bit_rate": c.bit_rate or None, "streams": streams,
                "chapters": [{"start": float(ch["start"] * ch["time_base"]),
                              "end": float(ch["end"] * ch["time_base"]),
                              "title": ch["metadata"].get("title")} for ch in c.chapters()],
                "metadata": {str(k): str(v) for k, v in c.metadata.items()}}
    video = [s for s in streams if s["type"] == "video"]
    if video:  # rotation and VFR need packets and a decoded frame: the source knows how
        try:
            with open_source(p, Options()) as src:
                video[0].update(rotation=src.spec.rotation, vfr=src.spec.vfr,
                                hdr=_hdr(src.hdr))
        except InputError as e:
            video[0]["error"] = str(e)
    return info


def _hdr(h) -> dict | None:
    """HDR10 metadata as plain numbers (chromaticities, cd/m²)."""
    if h is None:
        return None
    pair = lambda p: [round(float(p[0]), 4), round(float(p[1]), 4)]  # noqa: E731
    return {"primaries_rgb": [pair(p) for p in h.primaries] if h.primaries else None,
            "white_point": pair(h.white_point) if h.white_point else None,
            "luminance_min_max": pair(h.luminance) if h.luminance else None,
            "max_cll": h.max_cll, "max_fall": h.max_fall}


def _stream(s) -> dict:
    cc = s.codec_context
    d = {"index": s.index, "type": s.type, "codec": cc.name if cc is not None else None,
         "language": s.language, "time_base": str(s.time_base) if s.time_base else None,
         "frames": s.frames or None,
         "duration": _stated_duration(s) if s.type == "video" else (
             float(s.duration * s.time_base) if s.duration and s.time_base else None),
         "bit_rate": (cc.bit_rate or None) if cc is not None else None}
    if s.type == "video":
        rate = s.average_rate or s.guessed_rate
        color = tags_of(cc)
        d.update(width=cc.width, height=cc.height, pix_fmt=cc.pix_fmt,
                 bit_depth=_bit_depth(cc.pix_fmt), fps=str(Fraction(rate)) if rate else None,
                 sar=str(Fraction(s.sample_aspect_ratio)) if s.sample_aspect_ratio else None,
                 color_primaries=color.primaries, color_transfer=color.transfer,
                 color_matrix=color.matrix, color_range=color.range, rotation=0)
    elif s.type == "audio" and cc is not None:
        d.update(sample_rate=cc.sample_rate, channels=cc.channels,
                 layout=cc.layout.name if cc.layout else None, sample_fmt=cc.format.name
                 if cc.format else None)
    title = s.metadata.get("title")
    if title:
        d["title"] = title
    return d


def format_probe(info: dict) -> str:
    """A table: one row per stream, then chapters and metadata."""
    dur = f", {info['duration']:.3f} s" if info.get("duration") else ""
    rate = f", {info['bit_rate'] // 1000} kb/s" if info.get("bit_rate") else ""
    lines = [f"{info['path']}  ({info['container']}{dur}{rate})"]
    rows = [("#", "type", "codec", "details")]
    for s in info["streams"]:
        rows.append((str(s["index"]), s["type"], s.get("codec") or "?", _details(s)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        lines.append("  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths)) + "  " + r[3])
    for ch in info.get("chapters", []):
        lines.append(f"  chapter  {ch['start']:.3f}-{ch['end']:.3f} s  {ch['title'] or ''}")
    for k, v in info.get("metadata", {}).items():
        lines.append(f"  {k}: {v}")
    return "\n".join(lines)


def _details(s: dict) -> str:
    parts = []
    if s["type"] == "video":
        parts.append(f"{s['width']}x{s['height']}")
        parts.append(f"{s.get('pix_fmt') or '?'} ({s['bit_depth']}-bit)")
        fps = s.get("fps")
        parts.append(f"{fps} fps" + (" (variable)" if s.get("vfr") else "")
                     + (f" = {float(Fraction(fps)):.3f}" if fps and "/" in fps else ""))
        parts.append(f"{s.get('frames') or '?'} frames")
        color = [s.get(k) or "-" for k in ("color_primaries", "color_transfer", "color_matrix",
                                           "color_range")]
        if any(c != "-" for c in color):
            parts.append("color " + "/".join(color) + " (primaries/transfer/matrix/range)")
        hdr = s.get("hdr")
        if hdr:
            lum = hdr.get("luminance_min_max")
            parts.append("HDR10" + (f" mastering {lum[1]:g}/{lum[0]:g} cd/m2" if lum else "")
                         + (f" MaxCLL {hdr['max_cll']} MaxFALL {hdr['max_fall']}"
                            if hdr.get("max_cll") is not None else ""))
        if s.get("rotation"):
            parts.append(f"rotation {s['rotation']}")
        if s.get("sar") and s["sar"] != "1":
            parts.append(f"SAR {s['sar']}")
        if s.get("error"):
            parts.append(f"problem: {s['error']}")
    elif s["type"] == "audio":
        parts.append(f"{s.get('sample_rate')} Hz")
        parts.append(s.get("layout") or f"{s.get('channels')} ch")
    if s.get("duration"):
        parts.append(f"{s['duration']:.3f} s")
    if s.get("language") and s["language"] != "und":
        parts.append(s["language"])
    if s.get("title"):
        parts.append(repr(s["title"]))
    return ", ".join(parts)
