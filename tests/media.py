"""Media fixtures generated with PyAV itself (as PyAV's own tests do): moving gradients so
frames differ, optional audio / subtitles / VFR / rotation / color tags / chapters."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


# HDR10 static metadata in x265's units (BT.2020 display, 1000 cd/m2, MaxCLL 1000, MaxFALL 400)
HDR10_X265 = ("master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)"
              "L(10000000,1):max-cll=1000,400")


def gradient(i: int, w: int, h: int, bits: int = 8) -> np.ndarray:
    """Frame ``i``: (H, W, 3) uint8 or uint16 (full 16-bit scale) moving gradient."""
    y, x = np.mgrid[0:h, 0:w]
    r = (x * 255 // max(w - 1, 1) + 7 * i) % 256
    g = (y * 255 // max(h - 1, 1) + 5 * i) % 256
    b = ((x + y) * 3 + 11 * i) % 256
    img = np.stack([r, g, b], -1)
    if bits > 8:
        return (img * 257).astype(np.uint16)
    return img.astype(np.uint8)


def make_video(path, *, frames: int = 24, size: tuple[int, int] = (64, 48),
               rate: Fraction | int = Fraction(30), codec: str = "libx264",
               pix_fmt: str = "yuv420p", audio: str | None = None, subtitles: bool = False,
               vfr: bool = False, rotation: int = 0, color: dict | None = None,
               chapters: bool = False, metadata: dict | None = None,
               sar: Fraction | None = None, stream_tags: dict | None = None,
               attachment: bool = False, gop: int | None = None, hdr: bool = False,
               bframes: int = 0) -> Path:
    """Write a clip. ``audio``: None, 'aac', 'pcm_s16le', 'flac', 'opus'. ``vfr``: timestamps
    with irregular steps (in a 1/90000 time base). ``color``: codec-context color ints, e.g.
    ``dict(color_primaries=9, color_trc=16, colorspace=9, color_range=1)``."""
    path = Path(path)
    w, h = size
    rate = Fraction(rate)
    bits = 10 if "10" in pix_fmt else (12 if "12" in pix_fmt else 8)
    with av.open(str(path), "w") as c:
        opts = {"preset": "ultrafast"} if codec in ("libx264", "libx265") else {}
        if codec == "libx265":
            opts["x265-params"] = "log-level=error" + (":" + HDR10_X265 if hdr else "")
        if bframes and codec == "libx264":
            opts["x264-params"] = f"bframes={bframes}"  # reordered frames (ultrafast has none)
        v = c.add_stream(codec, rate=rate, options=opts)
        v.width, v.height, v.pix_fmt = w, h, pix_fmt
        if gop:
            v.codec_context.gop_size = gop  # a keyframe every gop frames (seekable)
        if vfr:
            v.time_base = Fraction(1, 90000)
            v.codec_context.time_base = Fraction(1, 90000)
        for k, val in (color or {}).items():
            setattr(v.codec_context, k, val)
        if sar:
            v.codec_context.sample_aspect_ratio = Fraction(sar)
        if rotation:
            v.set_display_rotation(rotation)
        a = None
        if audio:
            a = c.add_stream(audio, rate=48000, layout="stereo")
        srt = None
        if subtitles:
            srt = _srt_template(path, float(Fraction(frames) / rate))
            s = c.add_stream_from_template(srt.streams.subtitles[0])
        if metadata:
            c.metadata.update(metadata)
        for st in c.streams:  # e.g. {"audio": {"language": "fra", "disposition": "forced"}}
            tags = dict((stream_tags or {}).get(st.type, {}))
            if "disposition" in tags:
                st.disposition = getattr(av.stream.Disposition, tags.pop("disposition"))
            st.metadata.update(tags)
        if attachment:  # MKV only: a font, as styled subtitles carry
            c.add_attachment("font.ttf", "font/ttf", b"not really a font" * 8)
        c.start_encoding()  # so that frames=0 still writes a (frameless) file
        duration = Fraction(frames) / rate
        pts = 0
        for i in range(frames):
            fr = av.VideoFrame.from_ndarray(gradient(i, w, h, bits),
                                            "rgb48le" if bits > 8 else "rgb24")
            if color and pix_fmt.startswith("yuv"):
                # convert with the tagged matrix and range, so the tags describe the samples
                fr = fr.reformat(format=pix_fmt, dst_colorspace=color.get("colorspace", 5),
                                 dst_color_range=color.get("color_range", 1))
            if vfr:
                fr.pts = pts
                fr.time_base = Fraction(1, 90000)
                pts += int(90000 / rate * (1 + (i % 3) * 0.5))
            else:
                fr.pts = i
            for p in v.encode(fr):
                c.mux(p)
        for p in v.encode():
            c.mux(p)
        if vfr:
            duration = Fraction(pts, 90000)
        if a is not None:
            n_total = int(duration * 48000)
            step = 960 if audio == "opus" else 1024
            t = 0
            while t < n_total:
                n = min(step, n_total - t)
                tone = (0.2 * np.sin(2 * np.pi * 440 * (np.arange(t, t + n) / 48000)))
                data = np.stack([tone, tone]).astype(np.float32)
                fmt = a.codec_context.format.name
                if fmt == "s16":
                    af = av.AudioFrame.from_ndarray((data.T.reshape(1, -1) * 32767).astype(np.int16),
                                                    "s16", "stereo")
                elif fmt == "s32":
                    af = av.AudioFrame.from_ndarray((data.T.reshape(1, -1) * 2**31 * 0.99).astype(np.int32),
                                                    "s32", "stereo")
                else:
                    af = av.AudioFrame.from_ndarray(data, "fltp", "stereo")
                af.sample_rate, af.pts = 48000, t
                for p in a.encode(af):
                    c.mux(p)
                t += n
            for p in a.encode():
                c.mux(p)
        if srt is not None:
            for p in srt.demux(srt.streams.subtitles[0]):
                if p.size:
                    p.stream = s
                    c.mux(p)
            srt.close()
            path.with_suffix(".srt").unlink()
        if chapters:
            half = int(float(duration) * 500)
            c.set_chapters([
                {"id": 1, "start": 0, "end": half, "time_base": Fraction(1, 1000),
                 "metadata": {"title": "One"}},
                {"id": 2, "start": half, "end": int(float(duration) * 1000),
                 "time_base": Fraction(1, 1000), "metadata": {"title": "Two"}},
            ])
    return path


def _srt_template(path: Path, duration: float):
    """Two SubRip cues, opened with PyAV so their stream can be copied into the clip."""
    def ts(t: float) -> str:
        ms = int(t * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"

    srt = path.with_suffix(".srt")
    srt.write_text(f"1\n{ts(0)} --> {ts(duration * 0.4)}\nhello\n\n"
                   f"2\n{ts(duration * 0.5)} --> {ts(duration * 0.9)}\nworld\n\n")
    return av.open(str(srt))


def make_image_sequence(folder, frames: int = 5, size: tuple[int, int] = (40, 30),
                        bit_depth: int = 8, ext: str = "png", names: str = "img{}") -> Path:
    """Frames named img1, img2, ..., img10 (natural order differs from lexical)."""
    from PIL import Image

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    for i in range(frames):
        arr = gradient(i, w, h, bit_depth)
        name = folder / f"{names.format(i + 1)}.{ext}"
        if bit_depth > 8:
            # PIL writes 16-bit RGB poorly; PyAV's encoders write rgb48 PNG and TIFF
            codec = "tiff" if ext in ("tif", "tiff") else "png"
            pix = "rgb48le" if codec == "tiff" else "rgb48be"
            fr = av.VideoFrame.from_ndarray(arr, "rgb48le").reformat(format=pix)
            with av.open(str(name), "w", format="image2") as c:
                st = c.add_stream(codec, rate=1)
                st.width, st.height, st.pix_fmt = w, h, pix
                for p in st.encode(fr):
                    c.mux(p)
                for p in st.encode():
                    c.mux(p)
        else:
            Image.fromarray(arr).save(name)
    return folder


def make_audio(path, seconds: float = 0.5, codec: str = "aac") -> Path:
    """An audio-only file (no video stream)."""
    path = Path(path)
    with av.open(str(path), "w") as c:
        a = c.add_stream(codec, rate=48000, layout="mono")
        n = int(seconds * 48000)
        data = (0.2 * np.sin(np.arange(n) * 2 * np.pi * 440 / 48000)).astype(np.float32)[None]
        fr = av.AudioFrame.from_ndarray(data, "fltp", "mono")
        fr.sample_rate, fr.pts = 48000, 0
        for p in a.encode(fr):
            c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def make_frameless_video(path) -> Path:
    """An MKV whose video stream has no frames (its audio keeps the file valid)."""
    path = Path(path)
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=30)
        v.width, v.height, v.pix_fmt = 64, 48, "yuv420p"
        a = c.add_stream("aac", rate=48000, layout="mono")
        fr = av.AudioFrame.from_ndarray(np.zeros((1, 4096), np.float32), "fltp", "mono")
        fr.sample_rate, fr.pts = 48000, 0
        for p in a.encode(fr):
            c.mux(p)
        for p in a.encode():
            c.mux(p)
    return path


def truncate(path, fraction: float = 0.6) -> Path:
    """Cut a file to a fraction of its bytes (a corrupt, truncated stream)."""
    path = Path(path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def corrupt(path, at: float = 0.5, length: int = 200) -> Path:
    """Flip ``length`` bytes from ``at`` (fraction of the file) on: a stream damaged mid-way
    (the container's index stays readable)."""
    path = Path(path)
    data = bytearray(path.read_bytes())
    start = int(len(data) * at)
    for i in range(start, min(start + length, len(data))):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    return path


def decode_all(path) -> tuple[list[np.ndarray], list[int]]:
    """All video frames (rgb24) and their pts."""
    frames, pts = [], []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            pts.append(f.pts)
    return frames, pts
