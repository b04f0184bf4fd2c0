"""Pictures and videos for the page: display-sized frames, single frames of a file, and an
H.264 MP4 preview when the output itself is not something a browser plays."""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import torch
import torch.nn.functional as F

from ..options import Options

PREVIEW_WIDTH = 960  # [pixels] cap of the in-page MP4 preview's width
PREVIEW_CRF = 24
BROWSER_CODECS = ("h264", "vp8", "vp9", "av1")
BROWSER_SUFFIXES = (".mp4", ".m4v", ".webm")


def to_display(frame: torch.Tensor, max_side: int | None = None) -> np.ndarray:
    """``(H, W, 3)`` frame of any dtype the pipeline carries (uint8, uint16 at full 16-bit
    scale, float in [0, 1]; any device) -> uint8 ``(h, w, 3)`` numpy, long side <= max_side.
    Downscaling happens on the frame's device, so a 4K GPU frame crosses as a thumbnail."""
    assert frame.ndim == 3 and frame.shape[-1] == 3, f"expected (H, W, 3), {frame.shape=}"
    if frame.dtype == torch.uint8:
        x = frame.float() / 255.0
    elif frame.dtype == torch.uint16:
        x = frame.float() / 65535.0
    else:
        x = frame.float()
    h, w = x.shape[:2]
    if max_side is not None and max(h, w) > max_side:
        s = max_side / max(h, w)
        size = (max(1, round(h * s)), max(1, round(w * s)))
        x = F.interpolate(x.permute(2, 0, 1)[None], size=size, mode="bilinear",
                          antialias=True, align_corners=False)[0].permute(1, 2, 0)  # (h, w, 3)
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8).cpu().numpy()


def resize_display(img: np.ndarray, size: tuple[int, int], nearest: bool) -> np.ndarray:
    """uint8 ``(H, W, 3)`` -> ``(h, w, 3)``; nearest keeps the input's pixels visible in a
    before/after view, as an upscaler's users expect."""
    from PIL import Image

    h, w = size
    if img.shape[:2] == (h, w):
        return img
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(img).resize((w, h), resample))


def read_frame(path: str | Path, index: int, opts: Options | None = None) -> torch.Tensor:
    """Frame ``index`` of the stream a run with ``opts`` sees (its range applied), through
    the project's source, so image sequences, bit depths and trimming read as in a run."""
    from ..errors import InputError
    from ..io.source import open_source

    opts = opts or Options()
    if opts.frames is not None:
        from ..options import parse_frame_range

        first, _ = parse_frame_range(opts.frames)
        sub = opts.replace(frames=f"{first + index}:{first + index + 1}")
        skip = 0
    elif opts.start is not None or opts.end is not None:
        sub, skip = opts, index  # a time range: count from its first frame
    else:
        sub, skip = opts.replace(frames=f"{index}:{index + 1}"), 0
    with open_source(Path(path), sub) as src:
        for i, (frame, _info) in enumerate(src):
            if i == skip:
                return frame
    raise InputError(f"{path}: has no frame {index}")


def first_frame(path: str | Path) -> torch.Tensor:
    return read_frame(path, 0)


def browser_playable(path: str | Path) -> bool:
    """True for MP4/WebM holding H.264/VP8/VP9/AV1 in 8-bit 4:2:0 (what Chromium and Firefox
    play everywhere)."""
    path = Path(path)
    if path.suffix.lower() not in BROWSER_SUFFIXES:
        return False
    try:
        with av.open(str(path)) as c:
            if not c.streams.video:
                return False
            cc = c.streams.video[0].codec_context
            return cc.name in BROWSER_CODECS and cc.pix_fmt in ("yuv420p", "yuvj420p")
    except av.FFmpegError:
        return False


def make_preview(src: str | Path, dst: str | Path, max_width: int = PREVIEW_WIDTH) -> Path:
    """Re-encode ``src``'s video as H.264 4:2:0 MP4 no wider than ``max_width`` (no audio: it
    is only for watching in the page; the download is the real output). Written under a
    temporary name and renamed, so the page never serves half a file."""
    dst = Path(dst)
    tmp = dst.with_name(dst.stem + ".tmp" + dst.suffix)
    with av.open(str(src)) as inp, av.open(str(tmp), "w", format="mp4",
                                           options={"movflags": "+faststart"}) as out:
        vin = inp.streams.video[0]
        w, h = vin.codec_context.width, vin.codec_context.height
        if w > max_width:
            w, h = max_width, h * max_width / w
        w, h = max(2, int(w) // 2 * 2), max(2, int(round(h)) // 2 * 2)  # 4:2:0 needs even sizes
        rate = vin.average_rate or Fraction(30)
        vout = out.add_stream("libx264", rate=rate,
                              options={"crf": str(PREVIEW_CRF), "preset": "veryfast"})
        vout.width, vout.height, vout.pix_fmt = w, h, "yuv420p"
        vout.codec_context.time_base = vin.time_base or 1 / rate
        for frame in inp.decode(vin):
            small = frame.reformat(width=w, height=h, format="yuv420p")
            small.pts, small.time_base = frame.pts, frame.time_base
            for packet in vout.encode(small):
                out.mux(packet)
        for packet in vout.encode(None):
            out.mux(packet)
    os.replace(tmp, dst)
    return dst
