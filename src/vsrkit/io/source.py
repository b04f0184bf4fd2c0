"""Decode with PyAV (FFmpeg inside the wheel): lazily, frame by frame, with exact timestamps.

8-bit sources give ``uint8`` RGB, deeper ones ``uint16`` RGB at full 16-bit scale (rgb48), so
nothing is truncated to 8 bits. Rotation, color tags and sample aspect ratio are read and
carried (frames stay as stored; the sink writes the same tags). Image sequences (a folder or a
glob of PNG/JPEG/TIFF, natural sort) are a source too, at ``--fps`` (default 30).
"""

from __future__ import annotations

import bisect
import dataclasses
import glob
import heapq
import itertools
import os
import re
import sys
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator

import av
import numpy as np
import torch

from ..errors import InputError
from ..frames import ColorTags, FrameInfo, StreamSpec
from ..options import Options, parse_frame_range, parse_rate, parse_time
from .colortags import HdrMetadata, hdr_of, tags_of

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"}
VIDEO_EXTS = {".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".ts", ".mts", ".m2ts", ".mxf",
              ".flv", ".wmv", ".mpg", ".mpeg", ".3gp", ".ogv", ".y4m", ".nut"}
DEFAULT_IMAGE_FPS = Fraction(30)


def natural_key(name: str) -> tuple:
    """'img2' < 'img10': digit runs compare as numbers, the rest case-insensitively."""
    parts = re.split(r"(\d+)", name)
    return tuple((0, int(p), len(p)) if p.isdigit() else (1, p.lower(), 0) for p in parts)


def is_image_sequence(path: str | os.PathLike) -> bool:
    """A glob pattern, or a folder holding images and no videos. A path that exists is taken
    as it is ("clip [1080p].mp4" is a file, not a pattern)."""
    p = Path(path)
    if p.is_file():
        return False
    if not p.exists():
        return any(ch in str(path) for ch in "*?[")
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


# rates cameras and editors use; a container that stores milliseconds (MKV, WebM) yields
# averages near these (60000/1001 reads back as 19001/317), which snap back to them
STANDARD_RATES = sorted({Fraction(n) for n in range(1, 241)}
                        | {Fraction(n * 1000, 1001) for n in (24, 30, 48, 60, 120, 240)})
SNAP_TOLERANCE = Fraction(3, 1000)  # relative


def exact_rate(measured: Fraction, declared: Fraction | None = None) -> Fraction:
    """The stream's exact rational rate from the demuxer's average (``measured``) and the
    codec's own (``declared``, e.g. H.264 VUI timing): the declared one where it agrees with
    the average, else a standard rate within 0.3 %, else the average as it is."""
    if measured <= 0:
        return measured
    if declared and declared > 0 and abs(declared - measured) / measured <= SNAP_TOLERANCE:
        return declared
    if measured.denominator in (1, 1001):
        return measured
    near = min(STANDARD_RATES, key=lambda r: abs(r - measured))
    return near if abs(near - measured) / measured <= SNAP_TOLERANCE else measured


def _fraction(value) -> Fraction | None:
    try:
        return Fraction(value) if value else None
    except (TypeError, ValueError, ZeroDivisionError):
        return None


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
    hdr = None  # HdrMetadata (mastering display, light level) where the input has it

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
    """A media file's first video stream, decoded lazily packet by packet.

    Packets are matched to the frames the decoder gives back by their timestamps, so a frame
    the decoder could not make is noticed where it belongs: an InputError naming the frame and
    its time, or, with ``--ignore-errors``, the last good frame repeated at its timestamp (the
    output keeps the input's frame count and timing). A stream that ends well before the
    duration its header states (a truncated file) is reported the same way."""

    def __init__(self, path: Path, opts: Options, notice: Callable[[str], None] | None = None):
        self.path = path
        self.opts = opts
        self.notice = notice or _warn
        try:
            self.container = av.open(str(path))
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except (av.error.FFmpegError, UnicodeDecodeError) as e:
            raise InputError(f"{path}: not a media file PyAV/FFmpeg can read ({_why(e)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise InputError(f"{path}: no video stream")
        self.stream = vs = self.container.streams.video[0]
        vs.thread_type = "AUTO"
        cc = vs.codec_context
        if cc is None:
            self.container.close()
            raise InputError(f"{path}: its video stream has a codec FFmpeg cannot decode "
                             "(unknown, or a damaged header)")
        if cc.width <= 0 or cc.height <= 0:
            self.container.close()
            raise InputError(f"{path}: video stream has no size (corrupt header)")
        rate = exact_rate(Fraction(vs.average_rate or vs.guessed_rate or vs.base_rate
                                   or DEFAULT_IMAGE_FPS), _fraction(cc.framerate))
        tb = Fraction(vs.time_base)
        self.depth = _bit_depth(cc.pix_fmt)
        self.range = _Range(opts)
        self.stated_duration = _stated_duration(vs)
        duration = self.stated_duration or (
            self.container.duration / 1e6 if self.container.duration else None)
        self.spec = StreamSpec(
            width=cc.width, height=cc.height, frame_rate=rate, time_base=tb,
            frames=self.range.count(vs.frames or None), bit_depth=self.depth,
            pix_fmt=cc.pix_fmt, codec=cc.name, color=tags_of(cc),
            sample_aspect_ratio=Fraction(vs.sample_aspect_ratio) if vs.sample_aspect_ratio else None,
            vfr=_timestamps_vary(path, vs.index, rate, tb), duration=duration)
        self._events = self._decode()
        self._head = self._peek()
        # rotation (display matrix) and HDR10 metadata are handed over on decoded frames
        first = self._head[-1][1]
        self.spec = dataclasses.replace(self.spec, rotation=int(round(first.rotation or 0)))
        self.hdr: HdrMetadata | None = hdr_of(first)

    def _peek(self) -> list[tuple]:
        """Events up to the first decoded frame (kept and yielded first, not decoded twice)."""
        head = []
        for ev in self._events:
            head.append(ev)
            if ev[0] == "frame":
                return head
        self.container.close()
        bad = [ev for ev in head if ev[0] != "frame"]
        if bad:
            raise InputError(f"{self.path}: no frame could be decoded ({bad[0][2]})")
        raise InputError(f"{self.path}: zero frames")

    def _decode(self) -> Iterator[tuple]:
        """("frame", VideoFrame) in presentation order; ("lost", pts, why) for a packet whose
        frame did not come out after a decode error, at its place in presentation order;
        ("broken", None, why) at the end when the demuxer gave up before the end."""
        vs = self.stream
        sent: list[int] = []  # heap: pts of packets given to the decoder, not yet seen as frames
        # a decode error, in force until a frame comes out from after every packet sent
        # before it (frames the decoder drops after an error, without raising, are lost too;
        # a delayed B-frame from before the error does not end it)
        error: str | None = None
        horizon: int | None = None
        broken: str | None = None

        def out(frames):
            nonlocal error, sent
            for f in frames:
                if f.pts is None:
                    sent, error = [], None  # the decoder gives no timestamps: nothing to match
                else:
                    while sent and sent[0] < f.pts:
                        pts = heapq.heappop(sent)
                        # unmatched without an error: e.g. the second field of a field pair
                        if error is not None:
                            yield ("lost", pts, error)
                    if sent and sent[0] == f.pts:
                        heapq.heappop(sent)
                    if horizon is None or f.pts > horizon:
                        error = None
                yield ("frame", f)

        packets = self.container.demux(vs)
        flushed = False
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as e:
                broken = _why(e)
                break
            if packet.size == 0:
                flushed = True  # the demuxer's empty packet at the end flushes the decoder
            elif packet.pts is not None:
                heapq.heappush(sent, packet.pts)
            try:
                frames = vs.decode(packet)
            except av.error.EOFError:
                frames = []
            except av.error.FFmpegError as e:
                error, frames = _why(e), []
                horizon = max(sent) if sent else horizon
            yield from out(frames)
        if not flushed:
            try:
                frames = vs.decode(None)
            except av.error.FFmpegError:
                frames = []
            yield from out(frames)
        if error is not None:
            for pts in sorted(sent):
                yield ("lost", pts, error)
        if broken is not None:
            yield ("broken", None, broken)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, FrameInfo]]:
        fmt = "rgb48le" if self.depth > 8 else "rgb24"
        tb = self.spec.time_base
        step = _frame_step(self.spec)
        if not self._head:
            raise RuntimeError(f"{self.path}: a source is read once; open it again")
        head, self._head = self._head, []
        # the last good VideoFrame, repeated in place of a lost one (frames lost before the
        # first decoded one take that one)
        good = head[-1][1]
        events, index_of = itertools.chain(head, self._events), None  # index: counted
        late = self._seek_into_range(good)
        if late is not None:
            events, index_of = late
        elif self._head:  # the seek did not hold and the file was opened again: from the start
            head, self._head = self._head, []
            good, events = head[-1][1], itertools.chain(head, self._events)
        index = out_index = 0  # position in the input / in what is yielded
        end = None  # end of the last frame, in time_base units
        warned = False
        for kind, *ev in events:
            if kind == "broken":
                self._bad(f"the stream breaks off after {_frame(index, late, index_of)} "
                          f"({_at(end, tb)})", ev[1], f"keeping the {out_index} frames before it")
                break
            if kind == "frame":
                frame, pts, dur = ev[0], ev[0].pts, ev[0].duration or None
                why = "the decoder flagged it corrupt" if frame.is_corrupt else None
            else:
                frame, pts, dur, why = None, ev[0], None, ev[1]
            if index_of is not None and pts is not None:
                known = index_of(pts)
                index = index if known is None else known
            seconds = float(pts * tb) if pts is not None else None
            keep = self.range.keep(index, seconds)
            if keep is None:
                break
            if pts is not None:
                end = max(end or pts, pts + (dur or step))
            if why is None:
                good = frame
            where = _frame(index, late, index_of)
            index += 1
            if not keep:
                continue  # problems before the range are not the range's
            if why is not None:
                if not warned:
                    self._bad(f"corrupt stream at {where} ({_at(pts, tb)})", why,
                              "the last good frame is repeated in its place (later corrupt "
                              "frames too, without more warnings)")
                warned = True
                frame = good if good is not None else frame
            if frame is None:  # lost before any decoded frame: nothing to repeat
                continue
            arr = frame.to_ndarray(format=fmt)
            yield torch.from_numpy(arr), FrameInfo(out_index, pts, tb, dur)
            out_index += 1
        else:
            self._check_complete(out_index, end)
        if out_index == 0:
            raise InputError(f"{self.path}: zero frames in the selected range")

    def _seek_into_range(self, first) -> tuple[Iterator[tuple], Callable | None] | None:
        """A range that starts well into the stream is reached by seeking to the keyframe
        before it, not by decoding all that lies before. Returns the events from there and a
        pts -> frame index map (what --frames counts in), or None to decode from the start
        (no timestamps, near the start, a container without an index, a seek that missed)."""
        tb = self.spec.time_base
        if first.pts is None or not self.container.format.name.startswith(SEEKABLE_FORMATS):
            return None
        index_of = None
        if self.range.first > 0:
            # the first frame's pts: the A-th smallest of the packets' pts (reading packets
            # costs little next to decoding them; decoders reorder only a few frames)
            pts = self._packet_pts(self.range.first + REORDER_SLACK)
            if len(pts) <= self.range.first:
                return None
            target = pts[self.range.first]

            def index_of(p: int) -> int | None:
                return bisect.bisect_left(pts, p) if p <= pts[-1] else None
        elif self.range.t0 is not None:
            target = seconds_to_pts(self.range.t0, tb)
        else:
            return None
        if (target - first.pts) * tb < SEEK_MIN_S:
            return None
        try:
            self.container.seek(target, stream=self.stream, backward=True)
            self.stream.codec_context.flush_buffers()
        except av.error.FFmpegError:
            self._reopen()
            return None
        events = self._decode()
        head = []
        for ev in events:
            head.append(ev)
            if ev[0] == "frame":
                break
        landed = head[-1][1] if head and head[-1][0] == "frame" else None
        if landed is None or landed.pts is None or landed.pts > target:
            self._reopen()  # past the target: decode from the start
            return None
        return itertools.chain(head, events), index_of

    def _packet_pts(self, n: int) -> list[int]:
        """Sorted pts of the video stream's first n packets (a second demuxer, no decoding)."""
        with av.open(str(self.path)) as c:
            packets = c.demux(c.streams.video[0])
            return sorted(p.pts for p in itertools.islice(
                (p for p in packets if p.pts is not None and p.size), n))

    def _reopen(self) -> None:
        self.container.close()
        self.container = av.open(str(self.path))
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        self._events = self._decode()
        self._head = []
        self._peek()

    def _check_complete(self, index: int, end: int | None) -> None:
        """A stream that stops well short of its header's duration was cut (truncated file)."""
        stated = self.stated_duration
        if stated is None or end is None:
            return
        got = float(end * self.spec.time_base)  # absolute end: never above a complete stream's
        slack = max(TRUNCATION_SLACK_S, 3 / float(self.spec.frame_rate))
        if got < stated - slack:
            self._bad(f"the stream ends at {got:.3f} s (after {index} frames) but its header "
                      f"says {stated:.3f} s", "truncated or corrupt",
                      f"keeping the {index} frames there are")

    def _bad(self, where: str, why: str, conceal: str) -> None:
        """Raise, or with --ignore-errors say what is done instead (the caller does it)."""
        if not self.opts.ignore_errors:
            raise InputError(f"{self.path}: {where}: {why}; --ignore-errors conceals it and "
                             "goes on")
        self.notice(f"{self.path}: {where}: {why}; --ignore-errors: {conceal}")

    def close(self) -> None:
        self.container.close()


# a range starting this far (seconds) into the stream is reached by seeking, in containers
# with an index (FFmpeg's format names)
SEEK_MIN_S = 2
SEEKABLE_FORMATS = ("mov,mp4", "matroska")
# frames a decoder may hold back to reorder (B-frames) are far fewer than this
REORDER_SLACK = 64
# how far short of its header's duration a stream may end before it counts as truncated
TRUNCATION_SLACK_S = 0.5
# packets read at open to tell constant from variable frame rate
VFR_SAMPLE_PACKETS = 120


def _warn(message: str) -> None:
    print(f"vsrkit: warning: {message}", file=sys.stderr)


def _why(e: Exception) -> str:
    return getattr(e, "strerror", None) or str(e)


def _frame(index: int, seeked, index_of) -> str:
    """'frame N', or 'a frame' where a seek left the count unknown (--start)."""
    return "a frame" if seeked is not None and index_of is None else f"frame {index}"


def _at(pts: int | None, tb: Fraction) -> str:
    return "time unknown" if pts is None else f"{float(pts * tb):.3f} s"


def _frame_step(spec: StreamSpec) -> int:
    """One frame's duration in time_base units (at least 1)."""
    return max(1, int(round(1 / (spec.frame_rate * spec.time_base))))


def _stated_duration(vs) -> float | None:
    """The video stream's duration as its header states it (MP4/MOV: the stream's; MKV: the
    DURATION tag FFmpeg's muxer writes per track), seconds."""
    if vs.duration and vs.time_base:
        return float(vs.duration * vs.time_base)
    tag = vs.metadata.get("DURATION") or vs.metadata.get("duration")
    if tag:
        try:
            return parse_time(tag)
        except ValueError:
            return None
    return None


def _timestamps_vary(path: Path, index: int, rate: Fraction, tb: Fraction) -> bool:
    """True when the first packets' timestamps do not step by one frame (give or take the
    time base's rounding): a variable-frame-rate stream."""
    try:
        with av.open(str(path)) as c:
            packets = c.demux(c.streams[index])
            pts = sorted(p.pts for p in itertools.islice(packets, VFR_SAMPLE_PACKETS)
                         if p.pts is not None and p.size)
    except av.error.FFmpegError:
        return False
    nominal = 1 / (rate * tb)  # ticks per frame
    tolerance = max(Fraction(3, 2), nominal / 50)
    return any(abs((b - a) - nominal) > tolerance for a, b in zip(pts, pts[1:]))


class ImageSequenceSource(Source):
    """Images of a folder or a glob in natural order, frame i at i / fps (pts restart at 0
    for a trimmed range: nothing else is timed against them). Alpha is dropped; a sequence
    mixing depths is delivered at the first image's depth."""

    def __init__(self, path: Path, opts: Options, notice: Callable[[str], None] | None = None):
        self.path = path
        self.opts = opts
        self.notice = notice or _warn
        if path.is_dir():
            files = [f for f in path.iterdir() if f.is_file()]
        else:
            files = [Path(f) for f in glob.glob(str(path))]
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
        last: np.ndarray | None = None
        warned = False
        for i, f in enumerate(self.files):
            try:
                arr = self._read(f)
            except InputError as e:
                if not self.opts.ignore_errors or last is None:
                    raise InputError(f"{e} (frame {i}, {float(i * tb):.3f} s); --ignore-errors "
                                     "conceals it and goes on") from None
                if not warned:
                    self.notice(f"{e} (frame {i}); --ignore-errors: the last good frame is "
                                "repeated in its place (later ones too, without more warnings)")
                    warned = True
                arr = last
            if arr.shape[:2] != (self.spec.height, self.spec.width):
                raise InputError(f"{f}: size {arr.shape[1]}x{arr.shape[0]} differs from the first "
                                 f"image's {self.spec.width}x{self.spec.height}")
            want = np.uint16 if self.spec.bit_depth > 8 else np.uint8
            if arr.dtype != want:
                arr = (arr.astype(np.uint16) * 257 if want == np.uint16
                       else ((arr.astype(np.uint32) + 128) // 257).astype(np.uint8))
            last = arr
            yield torch.from_numpy(np.ascontiguousarray(arr)), FrameInfo(i, i, tb, 1)


def open_source(path: str | os.PathLike, opts: Options,
                notice: Callable[[str], None] | None = None) -> Source:
    """A video file, or an image sequence (a folder of images or a glob). ``notice`` gets the
    one warning ``--ignore-errors`` gives (default: stderr)."""
    p = Path(path)
    if is_image_sequence(p):
        return ImageSequenceSource(p, opts, notice)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    if p.is_dir():
        what = "videos, not an image sequence" if list_videos(p) else "no images"
        raise InputError(f"{p}: a folder with {what} (a folder of videos is a batch: give -o "
                         "an output folder)")
    return VideoSource(p, opts, notice)
