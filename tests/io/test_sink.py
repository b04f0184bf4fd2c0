"""io/sink.py driven directly by io/source.py (no engine): every timestamp, rate, bit depth,
color tags, rotation, other streams packet for packet, partial files, PNG folders and each
OutputError."""

import hashlib
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.io.conftest import NTSC
from tests.media import gradient, make_video
from vsrkit.errors import OutputError, UsageError
from vsrkit.io.sink import (check_output, clip_chapters, default_output_path, open_sink,
                            quantize)
from vsrkit.io.source import open_source
from vsrkit.options import Options


def transcode(src_path, out, *, as_float=False, chunk=4, stop_after=None, size=None, **opts):
    """Source -> sink as the pipeline does it; returns (final path or partial, notices)."""
    opts = Options(**opts)
    notes = []
    existed = out.exists()
    with open_source(src_path, opts) as src:
        check_output(src_path, out, opts)
        sink = open_sink(out, src, size or (src.spec.height, src.spec.width), opts,
                         notice=notes.append)
        frames, infos = [], []
        for f, info in src:
            if stop_after is not None and info.index == stop_after:
                return sink.abort(), notes
            frames.append(f.float() / (65535 if f.dtype == torch.uint16 else 255)
                          if as_float else f)
            infos.append(info)
            if len(frames) == chunk:
                sink.write(torch.stack(frames), infos)  # (T, H, W, 3)
                frames, infos = [], []
        if frames:
            sink.write(torch.stack(frames), infos)
        assert out.exists() == existed  # nothing at the final name before close()
        return sink.close(), notes


def seconds(path):
    """Presentation time of every frame, exact (Fraction)."""
    with av.open(str(path)) as c:
        return [f.pts * f.time_base for f in c.decode(video=0)]


def hashes(path, kind):
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        return [hashlib.sha256(bytes(p)).hexdigest() for p in c.demux(streams) if p.size]


def video(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return v.codec_context, v.average_rate, sum(1 for _ in c.decode(v))


def leftovers(folder, *keep):
    return sorted(f.name for f in folder.iterdir() if f.name not in keep)


# -- quantization ----------------------------------------------------------------------------

def test_quantize_rounds_half_to_even_after_clamping():
    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 1.0, 7.0]).reshape(1, 1, 7, 1)
    got = quantize(x.expand(1, 1, 7, 3), 8)[0, 0, :, 0].tolist()
    assert got == [0, 0, 0, 2, 2, 255, 255]


@given(st.lists(st.integers(0, 65535), min_size=1, max_size=64), st.sampled_from([8, 16]))
def test_quantize_inverts_exact_levels(levels, bits):
    peak = 255 if bits == 8 else 65535
    levels = [v % (peak + 1) for v in levels]
    x = torch.tensor(levels, dtype=torch.float64).div(peak).reshape(1, 1, -1, 1).expand(1, 1, -1, 3)
    q = quantize(x, bits)
    assert q.dtype == (np.uint8 if bits == 8 else np.uint16)
    assert q[0, 0, :, 1].tolist() == levels


@given(st.lists(st.tuples(st.integers(0, 10_000), st.integers(1, 5_000)), max_size=8),
       st.one_of(st.none(), st.integers(0, 12_000)), st.one_of(st.none(), st.integers(0, 12_000)))
def test_clip_chapters_keeps_only_the_range(spans, start_ms, end_ms):
    chapters = [{"id": i, "start": a, "end": a + d, "time_base": Fraction(1, 1000),
                 "metadata": {"title": str(i)}} for i, (a, d) in enumerate(spans)]
    start = None if start_ms is None else start_ms / 1000
    end = None if end_ms is None else end_ms / 1000
    for ch in clip_chapters(chapters, start, end):
        assert ch["start"] < ch["end"]
        assert start_ms is None or ch["start"] >= start_ms
        assert end_ms is None or ch["end"] <= end_ms
        orig = chapters[ch["id"]]
        assert orig["start"] <= ch["start"] and ch["end"] <= orig["end"]
    if start is None and end is None:
        assert clip_chapters(chapters, None, None) == [c for c in chapters if c["end"] > c["start"]]


# -- video and its timing --------------------------------------------------------------------

def test_h264_aac_mp4_keeps_timestamps_rate_audio_metadata(h264_aac, tmp_path):
    with open_source(h264_aac, Options()) as src:
        assert default_output_path(h264_aac, src, "x4") == h264_aac.with_name("h264_aac_x4.mp4")
    out, notes = transcode(h264_aac, tmp_path / "o.mp4", as_float=True)
    assert out == tmp_path / "o.mp4" and notes == []
    cc, rate, n = video(out)
    assert n == 20 and (cc.width, cc.height, cc.pix_fmt) == (64, 48, "yuv420p")
    assert rate == NTSC
    assert seconds(out) == seconds(h264_aac)  # every timestamp, exactly
    assert hashes(out, "audio") == hashes(h264_aac, "audio")  # packet for packet
    with av.open(str(out)) as c:
        assert c.metadata.get("title") == "hello"
        assert [ch["metadata"].get("title") for ch in c.chapters()] == ["One", "Two"]
    assert leftovers(tmp_path, "o.mp4") == []  # temporary files are gone


def test_float_frames_are_quantized_once_lossless(images8, images16, tmp_path):
    out, _ = transcode(images8, tmp_path / "o8.mkv", as_float=True, codec="ffv1")
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        assert c.streams.video[0].average_rate == 30
    assert len(got) == 11 and all(np.array_equal(g, gradient(i, 40, 30)) for i, g in enumerate(got))
    out, _ = transcode(images16, tmp_path / "o16.mkv", as_float=True, codec="ffv1")
    with av.open(str(out)) as c:
        got = [f.to_ndarray(format="rgb48le") for f in c.decode(video=0)]
    assert all(np.array_equal(g, gradient(i, 40, 30, 16)) for i, g in enumerate(got))


def test_10bit_in_10bit_out_with_color_tags(hevc10, tmp_path):
    with open_source(hevc10, Options()) as src:
        assert default_output_path(hevc10, src, "1920x1080").name == "hevc10_1920x1080.mkv"
    out, _ = transcode(hevc10, tmp_path / "o.mkv")
    with open_source(out, Options()) as back:
        spec, frames = back.spec, [f for f, _ in back]
    assert spec.codec == "hevc" and spec.pix_fmt == "yuv420p10le" and spec.bit_depth == 10
    assert (spec.color.primaries, spec.color.transfer, spec.color.matrix, spec.color.range) == (
        "bt2020", "smpte2084", "bt2020nc", "tv")
    assert len(frames) == 8 and frames[0].dtype == torch.uint16
    with open_source(hevc10, Options()) as src, open_source(out, Options()) as back:
        assert src.hdr is not None and src.hdr.max_cll == 1000 and src.hdr.max_fall == 400
        assert src.hdr.luminance == (Fraction(1, 10000), 1000)
        assert back.hdr == src.hdr  # HDR10 metadata carried
    out, notes = transcode(hevc10, tmp_path / "o_av1.mkv", codec="av1")
    with open_source(hevc10, Options()) as src, open_source(out, Options()) as back:
        assert back.hdr.max_cll == 1000 and back.hdr.luminance[1] == 1000
        assert [float(a) for a in back.hdr.white_point] == pytest.approx(
            [float(a) for a in src.hdr.white_point], abs=1e-4)  # AV1 stores 16-bit fixed point
    out, notes = transcode(hevc10, tmp_path / "o_h264.mkv", codec="h264")
    assert len(notes) == 1 and "HDR10" in notes[0]
    # 10-bit out into MP4 and MOV too (HEVC), ProRes is 10-bit always
    out, _ = transcode(hevc10, tmp_path / "o.mov", codec="prores")
    assert video(out)[0].pix_fmt == "yuv422p10le"


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_vfr_every_timestamp_survives(vfr, tmp_path, ext):
    out, _ = transcode(vfr, tmp_path / f"o{ext}")
    got, want = seconds(out), seconds(vfr)
    assert len(got) == len(want) == 15
    tol = Fraction(1, 1000) if ext == ".mkv" else 0  # MKV stores milliseconds
    assert all(abs(g - w) <= tol for g, w in zip(got, want))


def test_odd_sizes_never_crash_or_crop(odd, tmp_path):
    out, notes = transcode(odd, tmp_path / "o.mp4", codec="h264")
    cc, _, n = video(out)
    assert (cc.width, cc.height, cc.pix_fmt, n) == (51, 37, "yuv444p", 5)
    assert len(notes) == 1 and "odd output size 51x37" in notes[0]
    out, notes = transcode(odd, tmp_path / "o.mkv", codec="av1")
    cc, _, n = video(out)
    assert (cc.width, cc.height, n) == (51, 37, 5) and notes == []


def test_rotation_and_sar_carried(rotated, tmp_path):
    out, _ = transcode(rotated, tmp_path / "o.mp4")
    with open_source(out, Options()) as back:
        assert back.spec.rotation == 90 and back.spec.sample_aspect_ratio == Fraction(4, 3)


# -- other streams ---------------------------------------------------------------------------

def test_subtitles_audio_chapters_copied_into_mkv(subs, tmp_path):
    out, notes = transcode(subs, tmp_path / "o.mkv")
    assert notes == []
    assert len(hashes(out, "subtitle")) == 2
    assert hashes(out, "subtitle") == hashes(subs, "subtitle")
    assert hashes(out, "audio") == hashes(subs, "audio")
    with av.open(str(out)) as c:
        assert len(c.chapters()) == 2
        a, s, f = c.streams.audio[0], c.streams.subtitles[0], c.streams[3]
        assert (a.metadata["language"], a.metadata["title"], s.language) == ("fra", "French", "deu")
        assert s.disposition == av.stream.Disposition.forced
        assert (f.type, f.name, f.data) == ("attachment", "font.ttf", b"not really a font" * 8)


def test_subtitles_mp4_cannot_hold_are_reported(subs, tmp_path):
    with open_source(subs, Options()) as src:  # the default keeps them: MKV
        assert default_output_path(subs, src, "x2").suffix == ".mkv"
    out, notes = transcode(subs, tmp_path / "o.mp4")
    assert len(notes) == 2 and "subtitle stream 2 (srt)" in notes[0] and ".mkv" in notes[0]
    assert "attachment 3 (font.ttf)" in notes[1]
    assert hashes(out, "audio") == hashes(subs, "audio")
    with av.open(str(out)) as c:
        assert c.streams.audio[0].language == "fra"


def test_pcm_in_mov(pcm_mov, tmp_path):
    with open_source(pcm_mov, Options()) as src:
        assert default_output_path(pcm_mov, src, "x2").suffix == ".mov"
    out, notes = transcode(pcm_mov, tmp_path / "o.mov")
    assert notes == [] and hashes(out, "audio") == hashes(pcm_mov, "audio")
    out, notes = transcode(pcm_mov, tmp_path / "o.mp4")
    assert len(notes) == 1 and "re-encoded to alac" in notes[0]
    with av.open(str(out)) as c:
        a = c.streams.audio[0]
        assert a.codec_context.name == "alac" and a.duration * a.time_base > Fraction(3, 10)


def test_opting_out_of_streams(subs, tmp_path):
    out, _ = transcode(subs, tmp_path / "o.mkv", no_audio=True, no_subtitles=True)
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "attachment"]
    out, _ = transcode(subs, tmp_path / "p.mkv", no_data=True)
    with av.open(str(out)) as c:
        assert [s.type for s in c.streams] == ["video", "audio", "subtitle"]


def test_trimmed_range_starts_at_zero_and_cuts_other_streams(h264_aac, tmp_path):
    out, _ = transcode(h264_aac, tmp_path / "o.mp4", frames="5:15")
    t0 = seconds(h264_aac)[5]
    assert seconds(out) == [t - t0 for t in seconds(h264_aac)[5:15]]  # steps kept, from 0
    with av.open(str(out)) as c:
        times = [p.pts * p.time_base for p in c.demux(audio=0) if p.size]
        ch = c.chapters()[0]  # chapter One (0 to 0.333 s) cut to the range
        assert ch["start"] * ch["time_base"] == 0
        assert ch["end"] * ch["time_base"] == pytest.approx(float(Fraction(1, 3) - t0), abs=1e-3)
    # audio: packets from the range's start on (less than one packet of it is dropped)
    assert 0 <= times[0] <= Fraction(1024, 48000)
    assert times[-1] < Fraction(10) / NTSC
    in_audio = hashes(h264_aac, "audio")
    out_audio = hashes(out, "audio")
    i = in_audio.index(out_audio[0])
    assert in_audio[i:i + len(out_audio)] == out_audio  # copied, not re-encoded


def test_trimmed_subtitle_cue_kept_from_the_start(subs, tmp_path):
    out, _ = transcode(subs, tmp_path / "o.mkv", frames="3:8")  # cue 1: 0 to 0.133 s
    with av.open(str(out)) as c:
        cues = [(p.pts * p.time_base, p.duration * p.time_base)
                for p in c.demux(subtitles=0) if p.size]
    assert cues[0][0] == 0 and cues[0][1] == pytest.approx(0.133 - 0.1, abs=2e-3)


# -- finishing: atomic close, partial files --------------------------------------------------

def test_abort_writes_a_playable_partial(h264_aac, tmp_path):
    out = tmp_path / "clip_x4.mp4"
    partial, _ = transcode(h264_aac, out, stop_after=6, chunk=2)
    assert partial == tmp_path / "clip_x4.partial.mp4" and not out.exists()
    assert seconds(partial) == seconds(h264_aac)[:6]
    with av.open(str(partial)) as c:
        end = max(p.pts + p.duration for p in c.demux(audio=0) if p.size) * c.streams.audio[0].time_base
    assert end <= Fraction(6) / NTSC + Fraction(1024, 48000)  # audio cut to what was written
    assert leftovers(tmp_path, partial.name) == []


def test_abort_before_any_frame_leaves_nothing(h264_aac, images8, tmp_path):
    assert transcode(h264_aac, tmp_path / "o.mkv", stop_after=0)[0] is None
    assert transcode(images8, tmp_path / "frames", stop_after=0)[0] is None
    assert leftovers(tmp_path) == []


def test_close_with_nothing_written_is_an_error(h264_aac, tmp_path):
    for out in (tmp_path / "o.mkv", tmp_path / "frames"):
        with open_source(h264_aac, Options()) as src:
            sink = open_sink(out, src, (48, 64), Options())
            with pytest.raises(OutputError, match="no frames were written"):
                sink.close()
    assert leftovers(tmp_path) == []


def test_png_folder_output_names_and_depth(hevc10, images8, tmp_path):
    out, _ = transcode(hevc10, tmp_path / "frames")  # no extension: a folder of PNGs
    names = sorted(f.name for f in out.iterdir())
    assert names == [f"{i:06d}.png" for i in range(8)]
    with av.open(str(out / "000003.png")) as c:
        assert next(c.decode(video=0)).format.name.startswith("rgb48")  # 10-bit in: 16-bit PNG
    out, _ = transcode(images8, tmp_path / "same", codec="png", as_float=True)
    with av.open(str(out / "000010.png")) as c:
        assert np.array_equal(next(c.decode(video=0)).to_ndarray(format="rgb24"),
                              gradient(10, 40, 30))
    partial, _ = transcode(images8, tmp_path / "cut", stop_after=4)
    assert partial.name == "cut.partial" and len(list(partial.iterdir())) == 4


# -- codecs and quality ----------------------------------------------------------------------

@pytest.mark.parametrize("codec,ext,name", [("h264", ".mp4", "h264"), ("hevc", ".mp4", "hevc"),
                                            ("av1", ".mp4", "av1"), ("av1", ".webm", "av1"),
                                            ("prores", ".mov", "prores"), ("ffv1", ".mkv", "ffv1")])
def test_codecs(images8, tmp_path, codec, ext, name):
    out, _ = transcode(images8, tmp_path / f"o{ext}", codec=codec, frames="0:4")
    cc, rate, n = video(out)
    assert (cc.name in (name, "libdav1d"), n, rate) == (True, 4, 30)


def test_quality_and_crf_reach_the_encoder(media_dir, tmp_path):
    clip = make_video(media_dir / "noisy.mkv", frames=6, size=(96, 64), codec="ffv1",
                      pix_fmt="yuv444p")
    size = {q: transcode(clip, tmp_path / f"q{q}.mkv", quality=q)[0].stat().st_size
            for q in (2, 9)}
    assert size[2] < size[9]
    low = transcode(clip, tmp_path / "crf40.mkv", crf=40)[0].stat().st_size
    assert low < size[9]
    out, _ = transcode(clip, tmp_path / "p.mkv", codec="h264", pix_fmt="yuv422p")
    assert video(out)[0].pix_fmt == "yuv422p"


# -- errors ----------------------------------------------------------------------------------

def test_output_errors(h264_aac, tmp_path):
    existing = tmp_path / "exists.mkv"
    existing.write_bytes(b"x")
    cases = [
        (h264_aac, {}, "output is the input"),
        (existing, {}, "exists; use --overwrite"),
        (tmp_path / "no" / "such" / "o.mkv", {}, "output folder does not exist"),
        (tmp_path / "o.mp4", {"codec": "prores"}, "--codec prores cannot go into .mp4"),
        (tmp_path / "o.webm", {"codec": "h264"}, "cannot go into .webm"),
        (tmp_path / "o.xyz", {}, "unknown container"),
        (tmp_path / "folder", {"codec": "hevc"}, "holds PNG frames"),
    ]
    for out, opts, message in cases:
        with pytest.raises(OutputError, match=message):
            check_output(h264_aac, out, Options(**opts))
    check_output(h264_aac, existing, Options(overwrite=True))  # allowed
    with pytest.raises(UsageError, match="--pix-fmt yuv444p: libsvtav1 takes"):
        check_output(h264_aac, tmp_path / "o.mkv", Options(codec="av1", pix_fmt="yuv444p"))


def test_overwrite_replaces_atomically(h264_aac, tmp_path):
    out = tmp_path / "o.mkv"
    out.write_bytes(b"old")
    transcode(h264_aac, out, overwrite=True, frames="0:3")
    assert video(out)[2] == 3 and leftovers(tmp_path, "o.mkv") == []
