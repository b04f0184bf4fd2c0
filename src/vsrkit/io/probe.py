"""``vsrkit probe``: what a file holds, as a dict (``--json``) or a readable table."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av

from ..errors import InputError
from ..options import Options
from .source import _bit_depth, is_image_sequence, open_source


def probe(path: str | os.PathLike) -> dict:
    p = Path(path)
    if is_image_sequence(p):
        with open_source(p, Options()) as src:
            s = src.spec
            return {"path": str(p), "container": "image sequence", "duration": s.duration,
                    "streams": [{"index": 0, "type": "video", "codec": "image",
                                 "width": s.width, "height": s.height, "fps": str(s.frame_rate),
                                 "frames": s.frames, "bit_depth": s.bit_depth}],
                    "chapters": [], "metadata": {}}
    if not p.exists():
        raise InputError(f"{p}: no such file")
    try:
        c = av.open(str(p))
    except av.error.FFmpegError as e:
        raise InputError(f"{p}: not a media file PyAV/FFmpeg can read ({e})") from None
    with c:
        streams = []
        for s in c.streams:
            cc = s.codec_context
            d = {"index": s.index, "type": s.type, "codec": cc.name if cc else None,
                 "language": s.language, "time_base": str(s.time_base) if s.time_base else None,
                 "frames": s.frames or None,
                 "duration": float(s.duration * s.time_base) if s.duration and s.time_base else None}
            if s.type == "video":
                rate = s.average_rate or s.guessed_rate
                d.update(width=cc.width, height=cc.height, pix_fmt=cc.pix_fmt,
                         bit_depth=_bit_depth(cc.pix_fmt), fps=str(Fraction(rate)) if rate else None,
                         sar=str(s.sample_aspect_ratio) if s.sample_aspect_ratio else None,
                         color_primaries=int(cc.color_primaries), color_trc=int(cc.color_trc),
                         colorspace=int(cc.colorspace), color_range=int(cc.color_range))
            elif s.type == "audio":
                d.update(sample_rate=cc.sample_rate, channels=cc.channels,
                         layout=cc.layout.name if cc.layout else None)
            streams.append(d)
        video = [s for s in streams if s["type"] == "video"]
        if video:
            try:
                with open_source(p, Options()) as src:
                    video[0]["rotation"] = src.spec.rotation
            except InputError:
                pass
        return {"path": str(p), "container": c.format.name,
                "duration": c.duration / 1e6 if c.duration else None,
                "bit_rate": c.bit_rate, "streams": streams,
                "chapters": [{"start": float(ch["start"] * ch["time_base"]),
                              "end": float(ch["end"] * ch["time_base"]),
                              "title": ch["metadata"].get("title")} for ch in c.chapters()],
                "metadata": dict(c.metadata)}


def format_probe(info: dict) -> str:
    lines = [f"{info['path']}  ({info['container']}"
             + (f", {info['duration']:.3f} s" if info.get("duration") else "") + ")"]
    for s in info["streams"]:
        if s["type"] == "video":
            desc = (f"{s['width']}x{s['height']} {s.get('pix_fmt') or ''} {s['bit_depth']}-bit, "
                    f"{s.get('fps')} fps, {s.get('frames') or '?'} frames")
            if s.get("rotation"):
                desc += f", rotation {s['rotation']}"
            if "color_primaries" in s:
                desc += (f", color prim/trc/matrix/range {s['color_primaries']}/{s['color_trc']}/"
                         f"{s['colorspace']}/{s['color_range']}")
        elif s["type"] == "audio":
            desc = f"{s.get('sample_rate')} Hz, {s.get('layout')}"
        else:
            desc = ""
        lines.append(f"  #{s['index']:<2} {s['type']:<9} {s.get('codec') or '':<10} {desc}")
    for ch in info.get("chapters", []):
        lines.append(f"  chapter {ch['start']:.3f}-{ch['end']:.3f} s  {ch['title'] or ''}")
    for k, v in info.get("metadata", {}).items():
        lines.append(f"  {k}: {v}")
    return "\n".join(lines)
