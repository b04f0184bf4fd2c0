"""Encode with PyAV and keep every other stream.

Video is encoded into a temporary video-only file next to the output; ``close()`` then remuxes
it with the input's audio, subtitle and data streams (packets copied, never re-encoded when the
container allows), chapters and metadata, into a second temporary name, and renames that over
the output. Remuxing at the end keeps memory bounded: writing all video before any audio
through FFmpeg's interleaver would buffer the whole video. A PNG-sequence output is a folder
written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import heapq
import math
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Callable, Iterator, Sequence

import av
import numpy as np
import torch

from ..errors import OutputError, UsageError
from ..frames import FrameInfo, StreamSpec
from ..options import Options
from .colortags import SWSCALE_MATRICES, HdrMetadata, code_of
from .source import _frame_step

os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its whole config to stderr otherwise

# codec option -> (encoder, 8-bit pix_fmt, deep pix_fmt, CRF range)
CODECS = {
    "h264": ("libx264", "yuv420p", "yuv420p10le", 51),
    "hevc": ("libx265", "yuv420p", "yuv420p10le", 51),
    "av1": ("libsvtav1", "yuv420p", "yuv420p10le", 63),
    "prores": ("prores_ks", "yuv422p10le", "yuv422p10le", None),
    "ffv1": ("ffv1", "bgr0", "gbrp16le", None),  # lossless RGB: nothing converted
    # a PNG-folder output's segments (scale/segments.py): PNG packets in NUT, one file each
    "png": ("png", "rgb24", "rgb48be", None),
}
DEFAULT_CRF = {"h264": 18, "hevc": 20, "av1": 30}
# FFV1 version 3 with slices: encodes and decodes on several threads, still lossless
FFV1_FAST = {"level": "3", "slices": "16", "slicecrc": "0"}
# container extension -> codecs it may hold (others: OutputError before any work)
CONTAINER_CODECS = {
    ".mp4": {"h264", "hevc", "av1"}, ".m4v": {"h264", "hevc"},
    ".mov": {"h264", "hevc", "prores"}, ".mkv": set(CODECS), ".webm": {"av1"},
    ".avi": {"h264", "ffv1"}, ".nut": set(CODECS),
}
# audio a container can't hold is re-encoded to: ALAC is lossless, as the PCM it usually replaces
AUDIO_FALLBACK = {".mp4": "alac", ".m4v": "alac", ".mov": "alac", ".webm": "libopus",
                  ".avi": "pcm_s16le"}


def is_png_output(output: Path, opts: Options) -> bool:
    return opts.codec == "png" or output.suffix == "" or output.is_dir()


def choose_codec(output: Path, spec: StreamSpec, opts: Options) -> str:
    if is_png_output(output, opts):
        return "png"
    ext = output.suffix.lower()
    if opts.codec != "auto":
        return opts.codec
    if ext == ".webm":
        return "av1"
    return "hevc" if spec.bit_depth > 8 else "h264"


def default_output_path(input: Path, source, label: str) -> Path:
    """``name_<label>.<ext>`` next to the input: the input's own container when it can hold
    every stream the input has (so MP4 timestamps keep their time base), else MKV, which holds
    every stream type FFmpeg copies. An image sequence gives ``folder_<label>.mkv``."""
    input = Path(input)
    if source.spec.is_image_sequence:
        base = input if input.is_dir() else input.parent
        return base.parent / f"{base.name}_{label}.mkv"
    ext = input.suffix.lower()
    if ext in (".mp4", ".mov", ".m4v") and _holds_all(input, ext):
        return input.with_name(f"{input.stem}_{label}{ext}")
    return input.with_name(f"{input.stem}_{label}.mkv")


def _holds_all(input: Path, ext: str) -> bool:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        with av.open(str(Path(d) / f"probe{ext}"), "w") as dummy:
            supported = dummy.supported_codecs
    with av.open(str(input)) as c:
        chapters = c.chapters()
        return all(s.codec_context is not None and s.codec_context.name in supported
                   for s in c.streams if s.type in ("audio", "subtitle", "data")
                   and not _chapter_track(s, chapters))


def partial_path(output: Path) -> Path:
    if output.suffix:
        return output.with_name(f"{output.stem}.partial{output.suffix}")
    return output.with_name(output.name + ".partial")


def check_output(input: Path, output: Path, opts: Options) -> None:
    input, output = Path(input), Path(output)
    if output.exists() and input.exists() and output.resolve() == input.resolve():
        raise OutputError(f"{output}: the output is the input; choose another -o")
    if not output.parent.exists():
        raise OutputError(f"{output.parent}: output folder does not exist")
    if output.exists() and not opts.overwrite:
        if not (output.is_dir() and not any(output.iterdir())):
            raise OutputError(f"{output} exists; use --overwrite to replace it")
    if not is_png_output(output, opts):
        ext = output.suffix.lower()
        allowed = CONTAINER_CODECS.get(ext)
        if allowed is None:
            raise OutputError(f"{output}: unknown container {ext!r}; use .mkv, .mp4, .mov, .webm "
                              "or a folder for PNG frames")
        codec = opts.codec if opts.codec != "auto" else ("av1" if ext == ".webm" else "h264")
        if codec not in allowed:
            raise OutputError(f"--codec {codec} cannot go into {ext}; use one of "
                              f"{', '.join(sorted(allowed))} or .mkv")
    elif opts.codec not in ("auto", "png"):
        raise OutputError(f"{output}: a folder output holds PNG frames; --codec {opts.codec} "
                          "needs a file name with an extension")
    if opts.pix_fmt and not is_png_output(output, opts):
        _check_pix_fmt(opts.codec if opts.codec != "auto" else None, opts.pix_fmt)


def _check_pix_fmt(codec: str | None, pix_fmt: str) -> None:
    """--pix-fmt must exist and, when the codec is known, be one its encoder takes."""
    try:
        av.VideoFormat(pix_fmt)
    except (ValueError, av.error.FFmpegError):
        raise UsageError(f"--pix-fmt {pix_fmt!r}: no such pixel format (e.g. yuv420p, "
                         "yuv420p10le, yuv444p)") from None
    if codec is None:
        return
    takes = [f.name for f in av.codec.Codec(CODECS[codec][0], "w").video_formats or []]
    if takes and pix_fmt not in takes:
        raise UsageError(f"--pix-fmt {pix_fmt}: {CODECS[codec][0]} takes "
                         f"{', '.join(takes[:12])}")


def quantize_tensor(frames: torch.Tensor, bits: int) -> torch.Tensor:
    """(T, H, W, 3) float [0, 1] -> integers on the frames' device (uint8, or int32 holding
    16-bit values), clamped then rounded half to even; integer frames are rescaled only if
    their depth differs. The pipeline runs this on the GPU, so only integers cross to the host."""
    peak = 65535 if bits > 8 else 255
    if frames.dtype.is_floating_point:
        x = torch.round(frames.float().clamp(0, 1) * peak)
        return x.to(torch.int32 if bits > 8 else torch.uint8)
    if frames.dtype == torch.uint8 and bits > 8:
        return frames.to(torch.int32) * 257
    if frames.dtype == torch.uint16 and bits <= 8:
        return ((frames.to(torch.int32) + 128) // 257).clamp(0, 255).to(torch.uint8)
    return frames


def quantize(frames: torch.Tensor, bits: int) -> np.ndarray:
    """``quantize_tensor``, then on the host as numpy uint8/uint16."""
    x = quantize_tensor(frames, bits).cpu().numpy()
    return x.astype(np.uint16) if bits > 8 else x.astype(np.uint8)


class Sink:
    """Where output frames go. ``write`` takes (T, H, W, 3) frames, float in [0, 1] on any
    device (quantized once here) or uint8/uint16, with one FrameInfo each; ``close`` finishes
    the output, ``abort`` keeps what was written as ``name.partial.ext``."""

    path: Path
    frames_written: int = 0
    size: tuple[int, int]  # (H, W) of every frame written

    def write(self, frames: torch.Tensor, infos: Sequence[FrameInfo]) -> None:
        raise NotImplementedError

    def _check(self, frames: torch.Tensor, infos: Sequence[FrameInfo]) -> None:
        h, w = self.size
        if frames.ndim != 4 or tuple(frames.shape[1:]) != (h, w, 3) or len(infos) != len(frames):
            raise ValueError(f"sink {self.path.name} takes (T, {h}, {w}, 3) frames with one "
                             f"FrameInfo each; got {tuple(frames.shape)=}, {len(infos)=}")

    def close(self) -> Path:
        raise NotImplementedError

    def abort(self) -> Path | None:
        raise NotImplementedError


class PngSink(Sink):
    """Frames ``000000.png ...`` (8-bit, or 16-bit when the source is deeper)."""

    def __init__(self, output: Path, spec: StreamSpec, out_size: tuple[int, int], opts: Options):
        self.path = output
        self.size = tuple(out_size)
        self.bits = 16 if spec.bit_depth > 8 else 8
        self.tmp = output.with_name(f".{output.name}.vsrkit-tmp")
        shutil.rmtree(self.tmp, ignore_errors=True)
        self.tmp.mkdir()
        self.frames_written = 0

    def write(self, frames: torch.Tensor, infos: Sequence[FrameInfo]) -> None:
        self._check(frames, infos)
        for img in quantize(frames, self.bits):
            name = self.tmp / f"{self.frames_written:06d}.png"
            fmt = "rgb48be" if self.bits > 8 else "rgb24"
            arr = img.astype(">u2") if self.bits > 8 else img
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(arr).view(np.uint16)
                                            if self.bits > 8 else arr,
                                            "rgb48be" if self.bits > 8 else "rgb24")
            with av.open(str(name), "w", format="image2") as c:
                st = c.add_stream("png", rate=1)
                st.width, st.height, st.pix_fmt = fr.width, fr.height, fmt
                for p in st.encode(fr):
                    c.mux(p)
                for p in st.encode():
                    c.mux(p)
            self.frames_written += 1

    def append_encoded(self, path: Path, frames: Sequence[tuple[int | None, int | None]]) -> None:
        """A segment's PNG packets (a PNG file is its packet's bytes), one file per frame."""
        n = 0
        with av.open(str(path)) as c:
            for p in c.demux(c.streams.video[0]):
                if p.size:
                    (self.tmp / f"{self.frames_written:06d}.png").write_bytes(bytes(p))
                    self.frames_written += 1
                    n += 1
        if n != len(frames):
            raise OutputError(f"{path}: {n} frames, the manifest says {len(frames)}")

    def _finish(self, dest: Path) -> Path:
        if dest.exists():
            shutil.rmtree(dest) if dest.is_dir() else dest.unlink()
        os.replace(self.tmp, dest)
        return dest

    def close(self) -> Path:
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f"{self.path}: no frames were written")
        return self._finish(self.path)

    def abort(self) -> Path | None:
        if self.frames_written == 0:
            shutil.rmtree(self.tmp, ignore_errors=True)
            return None
        return self._finish(partial_path(self.path))


class VideoSink(Sink):
    """Encodes frames into a video-only intermediate, remuxed with the input's other streams at
    ``close``. Two modes serve segmented runs (scale/segments.py): ``video_file`` (a segment's
    worker) encodes the frames with their raw timestamps into exactly that file and nothing
    else (``finish_segment``); ``packets`` (the assembling parent) encodes nothing: it copies
    the packets of such segment files in order (``append_encoded``), so the encoder runs in
    the workers, in parallel, and the output is made as if one encoder had written it."""

    def __init__(self, output: Path, source, out_size: tuple[int, int], opts: Options,
                 notice: Callable[[str], None], *, video_file: Path | None = None,
                 video_format: str | None = None, packets: bool = False):
        self.path = output
        self.source = source
        self.opts = opts
        self.notice = notice
        spec: StreamSpec = source.spec
        self.spec = spec
        self.codec = choose_codec(output, spec, opts)
        enc, pix8, pix_deep, crf_max = CODECS[self.codec]
        h, w = self.size = tuple(out_size)
        if opts.pix_fmt:
            _check_pix_fmt(self.codec, opts.pix_fmt)
        pix = opts.pix_fmt or (pix_deep if spec.bit_depth > 8 else pix8)
        pix = _odd_size_pix_fmt(self.codec, pix, w, h, notice)
        self.pix = pix
        self.bits = 16 if av.VideoFormat(pix).components[0].bits > 8 else 8
        # NUT keeps any time base exactly (MKV would round timestamps to milliseconds)
        # (MOV for ProRes, which NUT does not take; MOV keeps time bases too)
        inter = ".mov" if self.codec == "prores" else ".nut"
        self.tmp_video = video_file or output.with_name(f".{output.stem}.vsrkit-video{inter}")
        self.segment = video_file is not None
        self.container = av.open(str(self.tmp_video), "w", format=video_format)
        options = {}
        # HDR10 mastering display and light level: x265 and SVT-AV1 write them as the input has
        # them; the other encoders have no place for them (said once)
        hdr = getattr(source, "hdr", None) or HdrMetadata()
        if hdr != HdrMetadata() and self.codec not in ("hevc", "av1"):
            notice(f"the input's HDR10 mastering metadata is not written by {self.codec}; use "
                   "--codec hevc or av1 to keep it")
        if crf_max is not None:
            crf = opts.crf if opts.crf is not None else (
                _quality_to_crf(opts.quality, self.codec) if opts.quality else DEFAULT_CRF[self.codec])
            options["crf"] = str(min(crf, crf_max))
            if self.codec == "h264":
                options["preset"] = "medium"
            elif self.codec == "hevc":
                options["preset"] = "medium"
                options["x265-params"] = ":".join(["log-level=error"] + hdr.x265_params())
            elif self.codec == "av1":
                options["preset"] = "8"
                if hdr.svtav1_params():
                    options["svtav1-params"] = ":".join(hdr.svtav1_params())
        elif self.codec == "ffv1":
            options.update(FFV1_FAST)
        elif self.codec == "prores":
            q = opts.quality or 8
            options["profile"] = "3" if q >= 8 else ("2" if q >= 5 else "1")
        self.yuv = pix.startswith(("yuv", "nv"))
        # tags as the input has them; unspecified YUV is written (and converted) as BT.709
        # limited range, so the file says how its samples were made
        c = spec.color
        self.matrix = code_of("matrix", c.matrix) or 1
        if self.yuv and self.matrix not in SWSCALE_MATRICES:
            notice(f"color matrix {c.matrix} cannot be converted to; writing bt709")
            self.matrix = 1
        self.crange = code_of("range", c.range) or 1
        self.frames_written = 0
        # written timestamps, in time_base units: a trimmed output starts at 0 (players show a
        # clip, not an empty lead-in), so everything is moved back by the first frame's pts
        self.offset = 0
        self.first_pts: int | None = None  # of the first written frame, after the offset
        self.last_end: int | None = None  # end of the last written frame, after the offset
        self.encoder = not packets
        self._tail: list[int] = []  # packets: the latest pts appended (append_encoded)
        self.stream = None  # packets: made from the first appended segment's stream
        if not packets:
            self._open_encoder(enc, options, w, h, pix)

    def _open_encoder(self, enc: str, options: dict, w: int, h: int, pix: str) -> None:
        spec = self.spec
        self.stream = vs = self.container.add_stream(enc, rate=spec.frame_rate, options=options)
        vs.width, vs.height, vs.pix_fmt = w, h, pix
        vs.codec_context.thread_type, vs.codec_context.thread_count = "AUTO", 0
        vs.time_base = spec.time_base
        vs.codec_context.time_base = spec.time_base
        c = spec.color
        cc = vs.codec_context
        if self.yuv:
            cc.colorspace = self.matrix
            cc.color_range = self.crange
        primaries, transfer = code_of("primaries", c.primaries), code_of("transfer", c.transfer)
        if primaries or self.yuv:
            cc.color_primaries = primaries or 1
        if transfer or self.yuv:
            cc.color_trc = transfer or 1
        if spec.sample_aspect_ratio:
            cc.sample_aspect_ratio = spec.sample_aspect_ratio
        if spec.rotation:
            vs.set_display_rotation(spec.rotation)

    def write(self, frames: torch.Tensor, infos: Sequence[FrameInfo]) -> None:
        self._check(frames, infos)
        fmt = "rgb48le" if self.bits > 8 else "rgb24"
        for img, info in zip(quantize(frames, self.bits), infos):
            fr = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), fmt)
            if self.yuv:
                fr = fr.reformat(format=self.pix, dst_colorspace=self.matrix,
                                 dst_color_range=self.crange)
            raw = info.pts if info.pts is not None else self.frames_written
            if self.first_pts is None:
                self.offset = raw if self._trimmed() and not self.segment else 0
                self.first_pts = raw - self.offset
            fr.pts = raw - self.offset
            fr.time_base = self.spec.time_base
            step = info.duration or _frame_step(self.spec)
            fr.duration = step  # packet durations make the container's average rate exact
            for p in self.stream.encode(fr):
                self.container.mux(p)
            self.last_end = fr.pts + step
            self.frames_written += 1

    def append_encoded(self, path: Path, frames: Sequence[tuple[int | None, int | None]]) -> None:
        """Copy a segment file's packets (written by a ``video_file`` sink with these settings
        from frames with the raw timestamps ``frames``: (pts, duration) each) onto this
        output's timeline, after what is already written."""
        step = _frame_step(self.spec)
        tb = self.spec.time_base
        first_raw = frames[0][0]
        if self.first_pts is None:
            self.offset = first_raw if self._trimmed() else 0
            self.first_pts = first_raw - self.offset
        n = 0
        lead: list = []  # the segment's first packets, whose dts the file does not hold
        with av.open(str(path)) as c:
            vs = c.streams.video[0]
            if self.stream is None:
                self.stream = _video_template(self.container, vs, None if self.spec.vfr
                                              else self.spec.frame_rate)
                self.stream.time_base = tb
            shift = None  # ticks (of the file's time base) its muxer added, plus our offset
            for p in c.demux(vs):
                if p.dts is None and p.pts is None:
                    continue  # the demuxer's empty flushing packet
                if shift is None:
                    # the first packet is the segment's first (key)frame: its pts in the file
                    # against the frame's own tells what the file's muxer shifted
                    shift = p.pts - int(round((first_raw - self.offset) * tb / p.time_base))
                p.pts = p.pts - shift if p.pts is not None else None
                p.dts = p.dts - shift if p.dts is not None else None
                p.stream = self.stream
                n += 1
                if p.dts is None and self._tail:
                    # With B-frames the first packets' decode times lie before the segment's
                    # first frame (the file cannot keep them: NUT stores no negative dts). In
                    # one continuous stream they are the previous frames' presentation times:
                    # decode time k is the k-th smallest pts, ``delay`` packets late.
                    lead.append(p)
                    continue
                if lead:
                    self._mux_lead(lead)
                self.container.mux(p)
            if lead:
                self._mux_lead(lead)
        if n != len(frames):
            raise OutputError(f"{path}: {n} packets, the manifest says {len(frames)} frames")
        self.frames_written += n
        end = max(pts + (dur or step) for pts, dur in frames) - self.offset
        self.last_end = end if self.last_end is None else max(self.last_end, end)
        # the latest presentation times so far, in this output's ticks (sorted)
        self._tail = sorted(pts - self.offset for pts, _ in frames)[-16:]

    def _mux_lead(self, lead: list) -> None:
        tail = self._tail[-len(lead):]
        for p, dts in zip(lead, [None] * (len(lead) - len(tail)) + tail):
            p.dts = None if dts is None else int(round(dts * self.spec.time_base / p.time_base))
            self.container.mux(p)
        lead.clear()

    def finish_segment(self) -> None:
        """A ``video_file`` sink's end: the encoder flushed and the file closed (no remux)."""
        self._finish_video()

    def _finish_video(self) -> None:
        if self.encoder:
            for p in self.stream.encode():
                self.container.mux(p)
        self.container.close()

    def _remux(self, dest: Path, end_seconds: float | None) -> Path:
        tmp = dest.with_name(f".{dest.stem}.vsrkit-tmp{dest.suffix}")
        try:
            _remux(self.tmp_video, self.source, tmp, self.opts, self.notice, end_seconds,
                   self._start_seconds(), self._video_shift(), self.offset * self.spec.time_base)
            os.replace(tmp, dest)
        finally:
            for f in (tmp, self.tmp_video):
                if f.exists():
                    f.unlink()
        return dest

    def _video_shift(self) -> Fraction:
        """Seconds the intermediate muxer added to video timestamps (it shifts them when an
        encoder with B-frames starts with negative DTS); taken back off when remuxing."""
        if self.first_pts is None:
            return Fraction(0)
        with av.open(str(self.tmp_video)) as c:
            for p in c.demux(c.streams.video[0]):
                if p.pts is not None:
                    return p.pts * p.time_base - self.first_pts * self.spec.time_base
        return Fraction(0)

    def _trimmed(self) -> bool:
        return bool(self.opts.frames or self.opts.start is not None or self.opts.end is not None)

    def _start_seconds(self) -> float | None:
        """Where copied streams start: all of them for a whole video (audio priming packets
        may lie before 0), the first written frame's time for a trimmed range."""
        if self.first_pts is None or not self._trimmed():
            return None
        return float((self.first_pts + self.offset) * self.spec.time_base)

    def _end_seconds(self, partial: bool) -> float | None:
        if self.last_end is None or not (partial or self._trimmed()):
            return None
        return float((self.last_end + self.offset) * self.spec.time_base)

    def close(self) -> Path:
        if self.frames_written == 0:
            self.abort()
            raise OutputError(f"{self.path}: no frames were written")
        self._finish_video()
        return self._remux(self.path, self._end_seconds(partial=False))

    def abort(self) -> Path | None:
        try:
            self._finish_video()
        except Exception:  # noqa: BLE001 - the encoder may be mid-error; keep what is muxed
            try:
                self.container.close()
            except Exception:  # noqa: BLE001
                pass
        if self.frames_written == 0:
            self.tmp_video.unlink(missing_ok=True)
            return None
        return self._remux(partial_path(self.path), self._end_seconds(partial=True))


def _odd_size_pix_fmt(codec: str, pix: str, w: int, h: int,
                      notice: Callable[[str], None]) -> str:
    """x264/x265 refuse subsampled chroma on odd sizes: there the output is 4:4:4 (same depth),
    never cropped. SVT-AV1 and ProRes code odd sizes exactly; FFV1 here is RGB."""
    odd = (w % 2 and pix.startswith(("yuv420", "yuv422"))) or (h % 2 and pix.startswith("yuv420"))
    if codec in ("h264", "hevc") and odd:
        full = "yuv444" + pix[6:]
        notice(f"odd output size {w}x{h}: encoding {codec} as {full} ({pix} needs even sizes); "
               "nothing is cropped")
        return full
    return pix


def _quality_to_crf(q: int, codec: str) -> int:
    """1..10 (10 best) onto the codec's CRF scale."""
    if codec == "av1":
        return 60 - 5 * q  # 10 -> 10, 5 -> 35, 1 -> 55
    return 38 - 2 * q  # x264/x265: 10 -> 18, 5 -> 28, 1 -> 36


def _remux(video: Path, source, dest: Path, opts: Options, notice: Callable[[str], None],
           end_seconds: float | None, start_seconds: float | None,
           video_shift: Fraction = Fraction(0), offset: Fraction = Fraction(0)) -> None:
    """Video packets from ``video`` + the input's other streams, merged by decode time, so
    memory stays bounded. Streams the container can't hold: audio is re-encoded (one notice),
    anything else is reported, never dropped silently. ``start_seconds``/``end_seconds``: the
    written range in the input's timeline (None: open); ``offset``: seconds the output's
    timeline lies before the input's (a trimmed output starts at 0)."""
    opened = []

    def open_(path):
        c = av.open(str(path))
        opened.append(c)
        return c

    container_options = {}
    if dest.suffix.lower() in (".mp4", ".m4v", ".mov"):
        # the edit list that shifts a trimmed start is in the movie time scale (default 1 ms):
        # in the video's own, the first frame keeps its exact time
        container_options["movie_timescale"] = str(source.spec.time_base.denominator)
    out = av.open(str(dest), "w", options=container_options)
    try:
        vin = open_(video)
        vs = vin.streams.video[0]
        ov = _video_template(out, vs, None if source.spec.vfr else source.spec.frame_rate)
        ov.time_base = vs.time_base  # the muxer may still round it (MKV: 1 ms)
        if not source.spec.vfr and source.spec.frame_rate:
            # the muxer takes the stream's rate (MKV's default duration) from the codec
            # context's framerate, which a template copy leaves unset
            try:
                ov.codec_context.framerate = source.spec.frame_rate
            except (AttributeError, TypeError):
                pass  # a bare mux stream (AV1) has no codec context; its rate is in the stream
        if source.spec.rotation:  # side data: not carried by the template or the NUT file
            ov.set_display_rotation(source.spec.rotation)
        targets = {("v", vs.index): ov}
        gens = [_packets(vin, [vs], "v", -float(video_shift))]
        if not source.spec.is_image_sequence:
            src = open_(source.path)
            _copy_tags(src.streams[source.stream.index], ov)
            supported = out.supported_codecs
            ext = dest.suffix.lower()
            # where what this container can't hold would fit
            hint = ".mkv" if ext != ".mkv" else source.path.suffix.lower()
            chapters = src.chapters()
            copy = []
            for s in src.streams:
                kind = s.type
                if kind == "video" and s.index == source.stream.index:
                    continue
                if (kind == "audio" and opts.no_audio) or (kind == "subtitle" and opts.no_subtitles) \
                        or (kind not in ("audio", "subtitle") and opts.no_data):
                    continue
                if _chapter_track(s, chapters):
                    continue  # QuickTime's chapter text track: the chapters are copied as such
                if kind == "attachment":  # fonts of styled subtitles, cover images
                    if ext == ".mkv":
                        out.add_attachment(s.name, s.mimetype, bytes(s.data))
                    else:
                        notice(f"attachment {s.index} ({s.name}) cannot be stored in {ext} and "
                               f"was not copied; use {hint} to keep it")
                    continue
                name = s.codec_context.name if s.codec_context is not None else None
                if name and name in supported and not _unportable(name, ext):
                    try:
                        targets[("s", s.index)] = t = out.add_stream_from_template(s)
                        _copy_tags(s, t)
                        copy.append(s)
                        continue
                    except (ValueError, av.error.FFmpegError):
                        pass
                if kind == "audio":
                    codec = AUDIO_FALLBACK.get(ext, "flac")
                    notice(f"audio stream {s.index} ({name}) cannot be copied into {ext}; "
                           f"re-encoded to {codec}")
                    gens.append(_reencoded_audio(open_(source.path), s.index, out, codec,
                                                 targets, start_seconds, end_seconds, offset))
                else:
                    notice(f"{kind} stream {s.index} ({name}) cannot be stored in {ext} and was "
                           f"not copied; use {hint} to keep it")
            if copy:
                gens.append(_packets(src, copy, "s", -float(offset)))
            out.metadata.update(src.metadata)
            chapters = shift_chapters(clip_chapters(chapters, start_seconds, end_seconds), offset)
            if chapters:
                out.set_chapters(chapters)
        # the written range in the output's timeline
        lo = None if start_seconds is None else start_seconds - float(offset)
        hi = None if end_seconds is None else end_seconds - float(offset)
        for t, tag, p in heapq.merge(*gens, key=lambda x: x[0]):
            if tag == "s":
                # copied packets are cut to the video's range: those starting before it are
                # dropped (a gap of less than one packet), but a subtitle cue showing at the
                # start is kept from the start on
                if hi is not None and t >= hi - 1e-6:
                    continue
                ticks = int(round(offset / p.time_base))
                if lo is not None and t < lo - 1e-6:
                    cut = math.ceil(float((Fraction(start_seconds) - p.pts * p.time_base)
                                          / p.time_base) - 1e-6) if p.pts is not None else 0
                    if p.stream.type != "subtitle" or not p.duration or cut >= p.duration:
                        continue
                    p.pts, p.dts, p.duration = p.pts + cut, p.pts + cut, p.duration - cut
                if ticks:
                    p.pts = p.pts - ticks if p.pts is not None else None
                    p.dts = p.dts - ticks if p.dts is not None else None
            if tag == "v" and video_shift:
                ticks = int(round(video_shift / p.time_base))
                p.pts = p.pts - ticks if p.pts is not None else None
                p.dts = p.dts - ticks if p.dts is not None else None
            if tag != "r":
                p.stream = targets[(tag, p.stream.index)]
            out.mux(p)
    finally:
        out.close()
        for c in opened:
            c.close()


def _video_template(out, vs, rate: Fraction | None):
    """A copy stream for our encoded video. PyAV's template copy looks the codec up by the
    decoder's name, which fails where FFmpeg decodes with a library (AV1: libdav1d); a bare mux
    stream of the codec's id name works there (AV1 carries its color tags in the bitstream)."""
    try:
        return out.add_stream_from_template(vs)
    except ValueError:
        cc = vs.codec_context
        name = {"libdav1d": "av1", "libaom-av1": "av1"}.get(cc.name, cc.name)
        return out.add_mux_stream(name, rate=rate, width=cc.width, height=cc.height,
                                  time_base=vs.time_base)


# stream tags a muxer writes itself (MKV statistics, durations); copying them would go stale
_OWN_TAGS = ("duration", "encoder", "bps", "number_of_frames", "number_of_bytes", "_statistics")


def _copy_tags(src_stream, dst_stream) -> None:
    """Language, title and the like, and the disposition (default, forced, ...)."""
    dst_stream.metadata.update({k: v for k, v in src_stream.metadata.items()
                                if not k.lower().startswith(_OWN_TAGS)})
    if src_stream.disposition:
        dst_stream.disposition = src_stream.disposition


def shift_chapters(chapters: list[dict], offset: Fraction) -> list[dict]:
    """Chapters moved ``offset`` seconds earlier (a trimmed output's timeline)."""
    out = []
    for ch in chapters:
        ticks = int(round(offset / Fraction(ch["time_base"])))
        out.append({**ch, "start": ch["start"] - ticks, "end": ch["end"] - ticks})
    return out


def clip_chapters(chapters: list[dict], start: float | None, end: float | None) -> list[dict]:
    """Chapters cut to the written range [start, end) seconds (None: open), in the input's
    timeline, as the video keeps its timestamps; chapters outside it are dropped."""
    kept = []
    for ch in chapters:
        tb = Fraction(ch["time_base"])
        lo, hi = ch["start"], ch["end"]
        if start is not None:
            lo = max(lo, int(math.ceil(Fraction(start) / tb)))
        if end is not None:
            hi = min(hi, int(Fraction(end) / tb))
        if hi > lo:
            kept.append({**ch, "start": lo, "end": hi})
    return kept


def _chapter_track(s, chapters) -> bool:
    """MP4/MOV keep chapters in a text track that FFmpeg shows as a data stream of no codec."""
    return bool(chapters) and s.type == "data" and s.codec_context is None


def _unportable(codec: str, ext: str) -> bool:
    """FFmpeg can put PCM into MP4, but few players read it: re-encode it (losslessly)."""
    return ext in (".mp4", ".m4v") and codec.startswith("pcm_")


def _packets(container, streams, tag: str, offset: float = 0.0
             ) -> Iterator[tuple[float, str, object]]:
    for p in container.demux(streams):
        ts = p.dts if p.dts is not None else p.pts
        if ts is None:
            continue  # the demuxer's empty flushing packet
        yield float(ts * p.time_base) + offset, tag, p


def _reencoded_audio(src, index: int, out, codec: str, targets, start_seconds, end_seconds,
                     offset: Fraction = Fraction(0)):
    s = src.streams[index]
    cc = s.codec_context
    o = out.add_stream(codec, rate=cc.sample_rate, layout=cc.layout.name)
    _copy_tags(s, o)
    targets[("r", index)] = o
    resampler = av.AudioResampler(format=o.codec_context.format, layout=o.codec_context.layout,
                                  rate=o.codec_context.sample_rate)

    def gen():
        def emit(packets):
            for p in packets:
                if p.dts is not None:
                    ticks = int(round(offset / p.time_base))  # into the output's timeline
                    p.pts = p.pts - ticks if p.pts is not None else None
                    p.dts -= ticks
                    yield float(p.dts * p.time_base), "r", p

        for frame in src.decode(s):
            t = frame.time
            if t is not None and end_seconds is not None and t >= end_seconds:
                break
            if t is not None and start_seconds is not None and t < start_seconds:
                continue
            for rf in resampler.resample(frame):
                yield from emit(o.encode(rf))
        for rf in resampler.resample(None):
            yield from emit(o.encode(rf))
        yield from emit(o.encode())

    return gen()


def open_sink(output: str | os.PathLike, source, out_size: tuple[int, int], opts: Options,
              notice: Callable[[str], None] = print, packets: bool = False) -> Sink:
    """``packets``: a segmented run's output, assembled from encoded segments
    (``append_encoded``) instead of frames."""
    output = Path(output)
    if is_png_output(output, opts):
        return PngSink(output, source.spec, out_size, opts)
    return VideoSink(output, source, out_size, opts, notice, packets=packets)
