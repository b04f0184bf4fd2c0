"""Decode with PyAV (FFmpeg inside the wheel): lazily, frame by frame, with exact timestamps.

8-bit sources give ``uint8`` RGB, deeper ones ``uint16`` RGB at full 16-bit scale (rgb48), so
nothing is truncated to 8 bits. Rotation, color tags and sample aspect ratio are read and
carried (frames stay as stored; the sink writes the same tags). Image sequences (a folder or a
glob of PNG/JPEG/TIFF, natural sort) are a source too, at ``--fps`` (default 30).
"""

from __future__ import annotations

import glob
import os
import re
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
import torch

from ..errors import InputError
from ..frames import ColorTags, FrameInfo, StreamSpec
from ..options import Options, parse_frame_range, parse_rate, parse_time

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
VIDEO_EXTS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mts", ".m2ts", ".mxf",
              ".flv", ".wmv", ".mpg", ".mpeg", ".3gp", ".ogv", ".y4m", ".nut"}
DEFAULT_IMAGE_FPS = Fraction(30)


def natural_key(name: str) -> tuple:
    """'img2' < 'img10': digit runs compare as numbers, the rest case-insensitively."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), len(p)) if p.isdigit() else (1, p.lower(), 0) for p in parts)


def is_image_sequence(path: str | os.PathLike) -> bool:
    """A glob pattern, or a folder holding images and no videos."""
    s = str(path)
    if any(ch in s for ch in "*?["):
        return True
    p = Path(path)
    if not p.is_dir():
        return False
    names = [f for f in p.iterdir() if f.is_file()]
    return any(f.suffix.lower() in IMAGE_EXTS for f in names) and not any(
        f.suffix.lower() in VIDEO_EXTS for f in names)


def list_videos(folder: str | os.PathLike) -> list[Path]:
    """Video files of a folder (by extension), in natural order."""
    return sorted((f for f in Path(folder).iterdir()
                   if f.is_file() and f.suffix.lower() in VIDEO_EXTS),
                  key=lambda f: natural_key(f.name))


def pts_to_seconds(pts: int, time_base: Fraction) -> Fraction:
    return pts * time_base


def seconds_to_pts(seconds: float | Fraction, time_base: Fraction) -> int:
    """Nearest timestamp in ``time_base`` units (PyAV's examples do this inline)."""
    return int(round(Fraction(seconds) / time_base))


def _bit_depth(pix_fmt: str | None) -> int:
    if not pix_fmt:
        return 8
    try:
        return max(c.bits for c in av.VideoFormat(pix_fmt).components)
    except (ValueError, AttributeError):
        return 8


class Source:
    """Iterate ``(frame (H, W, 3) uint8|uint16 tensor, FrameInfo)``; a context manager."""

    spec: StreamSpec
    path: Path

    def __iter__(self) -> Iterator[tuple[torch.Tensor, FrameInfo]]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> "Source":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Range:
    """--frames A:B or --start/--end, as a predicate on (index, seconds)."""

    def __init__(self, opts: Options):
        self.first, self.stop = 0, None
        self.t0 = self.t1 = None
        if opts.frames:
            self.first, self.stop = parse_frame_range(opts.frames)
        if opts.start is not None:
            self.t0 = parse_time(opts.start, "start")
        if opts.end is not None:
            self.t1 = parse_time(opts.end, "end")
        if self.t0 is not None and self.t1 is not None and self.t1 <= self.t0:
            raise InputError(f"--end {opts.end} is not after --start {opts.start}")

    def keep(self, index: int, seconds: float | None) -> bool | None:
        """True keep, False skip, None: past the end (stop decoding)."""
        if self.stop is not None and index >= self.stop:
            return None
        if seconds is not None and self.t1 is not None and seconds >= self.t1 - 1e-9:
            return None
        if index < self.first:
            return False
        if seconds is not None and self.t0 is not None and seconds < self.t0 - 1e-9:
            return False
        return True

    def count(self, total: int | None) -> int | None:
        if total is None or self.t0 is not None or self.t1 is not None:
            return None  # known only after decoding
        stop = total if self.stop is None else min(total, self.stop)
        return max(0, stop - self.first)


class VideoSource(Source):
    def __init__(self, path: Path, opts: Options):
        self.path = path
        self.opts = opts
        try:
            self.container = av.open(str(path))
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (av.error.InvalidDataError, av.error.FFmpegError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not a media file PyAV/FFmpeg can read ({e})") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{path}: no video stream")
        self.stream = vs = self.container.streams.video[0]
        vs.thread_type = "AUTO"
        cc = vs.codec_context
        rate = vs.average_rate or vs.guessed_rate or vs.base_rate
        if not rate:
            rate = DEFAULT_IMAGE_FPS
        pix_fmt = cc.pix_fmt
        self.depth = _bit_depth(pix_fmt)
        self.range = _Range(opts)
        total = vs.frames or None
        duration = (float(vs.duration * vs.time_base) if vs.duration else
                    (self.container.duration / 1e6 if self.container.duration else None))
        rotation = 0
        self.spec = StreamSpec(
            width=cc.width, height=cc.height, frame_rate=Fraction(rate),
            time_base=Fraction(vs.time_base), frames=self.range.count(total),
            bit_depth=self.depth, pix_fmt=pix_fmt, codec=cc.name,
            color=ColorTags(primaries=_i(cc.color_primaries), transfer=_i(cc.color_trc),
                            matrix=_i(cc.colorspace), range=_i(cc.color_range)),
            rotation=rotation,
            sample_aspect_ratio=Fraction(vs.sample_aspect_ratio) if vs.sample_aspect_ratio else None,
            duration=duration)
        if cc.width <= 0 or cc.height <= 0:
            self.container.close()
            raise InputError(f"{path}: video stream has no size (corrupt header)")
        self._peek_rotation()

    def _peek_rotation(self) -> None:
        """Rotation lives in the display matrix (stream side data, or the first frame's)."""
        import dataclasses

        self._gen = self.container.decode(self.stream)
        try:
            first = next(self._gen)
        except StopIteration:
            self.container.close()
            raise InputError(f"{self.path}: zero frames") from None
        except av.error.FFmpegError as e:
            self.container.close()
            raise InputError(f"{self.path}: cannot decode the first frame ({e})") from None
        rot = int(round(getattr(first, "rotation", 0) or 0))
        self.spec = dataclasses.replace(self.spec, rotation=rot)
        self._first = first  # kept and yielded first, not decoded twice

    def __iter__(self) -> Iterator[tuple[torch.Tensor, FrameInfo]]:
        fmt = "rgb48le" if self.depth > 8 else "rgb24"
        tb = Fraction(self.stream.time_base)
        index = out_index = 0
        last: np.ndarray | None = None
        frames = self._frames()
        while True:
            try:
                frame = next(frames)
            except StopIteration:
                break
            except av.error.FFmpegError as e:
                where = f"frame {index} (~{index / float(self.spec.frame_rate):.2f} s)"
                if not self.opts.ignore_errors or last is None:
                    raise InputError(f"{self.path}: corrupt stream at {where}: {e}; "
                                     "--ignore-errors conceals it and goes on") from None
                continue
            seconds = float(frame.pts * tb) if frame.pts is not None else None
            keep = self.range.keep(index, seconds)
            index += 1
            if keep is None:
                break
            if not keep:
                continue
            arr = frame.to_ndarray(format=fmt)
            last = arr
            yield (torch.from_numpy(arr), FrameInfo(out_index, frame.pts, tb,
                                                    frame.duration if frame.duration else None))
            out_index += 1
        if out_index == 0:
            raise InputError(f"{self.path}: zero frames in the selected range")

    def _frames(self):
        yield self._first
        gen = self._gen  # the generator that decoded the first frame: the decoder is mid-stream
        while True:
            try:
                yield from gen
                return
            except av.error.FFmpegError as e:
                if not self.opts.ignore_errors:
                    raise
                print(f"vsrkit: warning: {self.path}: {e}; concealed (--ignore-errors)")
                gen = self.container.decode(self.stream)

    def close(self) -> None:
        self.container.close()


def _i(v) -> int | None:
    try:
        v = int(v)
    except (TypeError, ValueError):
        return None
    return v


class ImageSequenceSource(Source):
    def __init__(self, path: Path, opts: Options):
        self.path = path
        s = str(path)
        if any(ch in s for ch in "*?["):
            files = [Path(f) for f in glob.glob(s)]
        else:
            files = [f for f in path.iterdir() if f.is_file()]
        files = sorted((f for f in files if f.suffix.lower() in IMAGE_EXTS),
                       key=lambda f: natural_key(f.name))
        if not files:
            raise InputError(f"{path}: no PNG/JPEG/TIFF images")
        self.range = _Range(opts)
        first, stop = self.range.first, self.range.stop
        rate = parse_rate(opts.fps) if opts.fps else DEFAULT_IMAGE_FPS
        self.rate = rate
        tb = Fraction(1) / rate
        if self.range.t0 is not None or self.range.t1 is not None:
            t0 = self.range.t0 or 0
            first = max(first, int(round(t0 * rate)))
            if self.range.t1 is not None:
                stop = int(round(self.range.t1 * rate)) if stop is None else min(stop, int(round(self.range.t1 * rate)))
        self.files = files[first:stop]
        self.offset = first
        if not self.files:
            raise InputError(f"{path}: zero frames in the selected range")
        img = self._read(self.files[0])
        h, w = img.shape[:2]
        self.spec = StreamSpec(width=w, height=h, frame_rate=rate, time_base=tb,
                               frames=len(self.files), bit_depth=16 if img.dtype == np.uint16 else 8,
                               pix_fmt="rgb48le" if img.dtype == np.uint16 else "rgb24",
                               codec="image", is_image_sequence=True,
                               duration=float(len(self.files) / rate))

    @staticmethod
    def _read(f: Path) -> np.ndarray:
        try:
            with av.open(str(f)) as c:
                fr = next(c.decode(video=0))
                deep = _bit_depth(fr.format.name) > 8
                return fr.to_ndarray(format="rgb48le" if deep else "rgb24")
        except (av.error.FFmpegError, StopIteration) as e:
            raise InputError(f"{f}: not a readable image ({e})") from None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, FrameInfo]]:
        tb = self.spec.time_base
        for i, f in enumerate(self.files):
            arr = self._read(f)
            if arr.shape[:2] != (self.spec.height, self.spec.width):
                raise InputError(f"{f}: size {arr.shape[1]}x{arr.shape[0]} differs from the first "
                                 f"image's {self.spec.width}x{self.spec.height}")
            want = np.uint16 if self.spec.bit_depth > 8 else np.uint8
            if arr.dtype != want:
                arr = (arr.astype(np.uint16) * 257) if want == np.uint16 else (arr >> 8).astype(np.uint8)
            yield torch.from_numpy(np.ascontiguousarray(arr)), FrameInfo(i, i, tb, 1)


def open_source(path: str | os.PathLike, opts: Options) -> Source:
    p = Path(path)
    if is_image_sequence(p):
        return ImageSequenceSource(p, opts)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        raise InputError(f"{p}: a folder without images (a folder of videos is a batch: "
                         "give -o an output folder)")
    return VideoSource(p, opts)
