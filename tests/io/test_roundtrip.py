"""Source -> classical engine -> sink on generated media: nothing of the input is lost."""

import hashlib
from fractions import Fraction

import av
import numpy as np
import pytest

import vsrkit
from tests.media import decode_all, make_image_sequence, make_video, truncate
from vsrkit.errors import InputError, OutputError


def packet_hashes(path, kind):
    with av.open(str(path)) as c:
        streams = [s for s in c.streams if s.type == kind]
        return [hashlib.sha256(bytes(p)).hexdigest() for p in c.demux(streams) if p.size]


def video_info(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        cc = v.codec_context
        pts = [f.pts for f in c.decode(v)]
        return dict(w=cc.width, h=cc.height, pix_fmt=cc.pix_fmt, rate=v.average_rate,
                    tb=v.time_base, pts=pts, prim=int(cc.color_primaries), trc=int(cc.color_trc),
                    matrix=int(cc.colorspace), range=int(cc.color_range))


def up(src, out, **kw):
    kw.setdefault("model", "nearest")
    kw.setdefault("scale", 2)
    notes = []
    r = vsrkit.upscale(src, out, notice=notes.append, **kw)
    return r, notes


def test_h264_aac_frames_timestamps_rate_audio(tmp_path):
    src = make_video(tmp_path / "a.mp4", frames=20, rate=Fraction(30000, 1001), audio="aac",
                     metadata={"title": "hello"})
    r, _ = up(src, tmp_path / "o.mp4")
    i, o = video_info(src), video_info(r.output)
    assert r.frames == 20 and len(o["pts"]) == 20
    assert (o["w"], o["h"]) == (128, 96)
    assert o["rate"] == Fraction(30000, 1001)
    assert [float(p * o["tb"]) for p in o["pts"]] == pytest.approx(
        [float(p * i["tb"]) for p in i["pts"]], abs=1e-6)
    assert packet_hashes(src, "audio") == packet_hashes(r.output, "audio")
    with av.open(str(r.output)) as c:
        assert c.metadata.get("title") == "hello"


def test_vfr_timestamps_survive(tmp_path):
    src = make_video(tmp_path / "v.mkv", frames=15, vfr=True)
    r, _ = up(src, tmp_path / "o.mkv")
    i, o = video_info(src), video_info(r.output)
    steps = np.diff([float(p * i["tb"]) for p in i["pts"]])
    assert steps.max() - steps.min() > 0.01  # really variable
    assert [float(p * o["tb"]) for p in o["pts"]] == pytest.approx(
        [float(p * i["tb"]) for p in i["pts"]], abs=1e-3)


def test_hevc_10bit_keeps_depth_and_color_tags(tmp_path):
    color = dict(color_primaries=9, color_trc=16, colorspace=9, color_range=1)
    src = make_video(tmp_path / "h.mkv", frames=8, codec="libx265", pix_fmt="yuv420p10le",
                     color=color)
    with vsrkit.io.source.open_source(src, vsrkit.Options()) as s:
        frame, _ = next(iter(s))
        assert frame.dtype.__str__() == "torch.uint16" and s.spec.bit_depth == 10
    r, _ = up(src, tmp_path / "o.mkv")
    o = video_info(r.output)
    assert o["pix_fmt"] == "yuv420p10le"
    assert (o["prim"], o["trc"], o["matrix"], o["range"]) == (9, 16, 9, 1)
    assert len(o["pts"]) == 8


def test_subtitles_chapters_kept(tmp_path):
    src = make_video(tmp_path / "s.mkv", frames=10, audio="aac", subtitles=True, chapters=True)
    r, _ = up(src, tmp_path / "o.mkv")
    assert packet_hashes(src, "subtitle") == packet_hashes(r.output, "subtitle")
    with av.open(str(r.output)) as c:
        assert len(c.chapters()) == 2


def test_pcm_into_mp4_is_reencoded_with_notice(tmp_path):
    src = make_video(tmp_path / "p.mov", frames=10, audio="pcm_s16le")
    r, notes = up(src, tmp_path / "o.mp4")
    assert any("re-encoded" in n for n in notes)
    with av.open(str(r.output)) as c:
        assert c.streams.audio[0].codec_context.name == "alac"
        assert c.streams.audio[0].frames > 0 or any(True for _ in c.demux(c.streams.audio[0]))


def test_subtitles_into_mp4_reported_not_silent(tmp_path):
    src = make_video(tmp_path / "s.mkv", frames=8, subtitles=True)
    _, notes = up(src, tmp_path / "o.mp4")
    assert any("subtitle" in n and "not copied" in n for n in notes)


def test_rotation_and_odd_size(tmp_path):
    src = make_video(tmp_path / "r.mp4", frames=6, size=(50, 36), rotation=90)
    r, notes = up(src, tmp_path / "o.mp4", scale=1.5)  # 75x54: odd width
    o = video_info(r.output)
    assert (o["w"], o["h"]) == (75, 54) and len(o["pts"]) == 6
    with vsrkit.io.source.open_source(r.output, vsrkit.Options()) as s:
        assert s.spec.rotation == 90


def test_truncated_file_reports_frame_or_conceals(tmp_path):
    src = truncate(make_video(tmp_path / "t.mkv", frames=60, size=(64, 48)), 0.6)
    out = tmp_path / "o.mkv"
    with pytest.raises(InputError, match="frame"):
        up(src, out)
    r, notes = up(src, out, ignore_errors=True, overwrite=True)
    assert 0 < r.frames < 60


def test_image_sequence_natural_order_16bit(tmp_path):
    folder = make_image_sequence(tmp_path / "seq", frames=11, bit_depth=16)
    out = tmp_path / "frames_out"
    r = vsrkit.upscale(folder, out, model="nearest", scale=1, fps="24000/1001")
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [f"{i:06d}.png" for i in range(11)]
    with av.open(str(files[9])) as c:
        fr = next(c.decode(video=0))
        assert fr.format.name.startswith("rgb48")
        got = fr.to_ndarray(format="rgb48le")
    from tests.media import gradient

    assert np.array_equal(got, gradient(9, 40, 30, 16))  # img10 is the 10th frame, not the 2nd


def test_frames_range_and_codecs(tmp_path):
    src = make_video(tmp_path / "c.mp4", frames=16, audio="aac")
    for codec, ext in (("ffv1", ".mkv"), ("prores", ".mov"), ("av1", ".mkv"), ("hevc", ".mp4")):
        r, _ = up(src, tmp_path / f"o_{codec}{ext}", codec=codec, frames="4:12", quality=5)
        o = video_info(r.output)
        assert len(o["pts"]) == 8, codec
        assert o["pts"][0] == 0  # a trimmed output starts at 0


def test_lossless_ffv1_is_exact(tmp_path):
    folder = make_image_sequence(tmp_path / "seq8", frames=3, size=(20, 14))
    r = vsrkit.upscale(folder, tmp_path / "o.mkv", model="nearest", scale=1, codec="ffv1")
    frames, _ = decode_all(r.output)
    from tests.media import gradient

    assert all(np.array_equal(f, gradient(i, 20, 14)) for i, f in enumerate(frames))


def test_codec_container_mismatch(tmp_path):
    src = make_video(tmp_path / "m.mp4", frames=4)
    with pytest.raises(OutputError):
        up(src, tmp_path / "o.mp4", codec="prores")


@pytest.mark.parametrize("codec", ["h264", "ffv1", "av1"])
def test_ntsc_rate_kept_in_mkv(tmp_path, codec):
    src = make_video(tmp_path / "n.mp4", frames=12, rate=Fraction(30000, 1001))
    r, _ = up(src, tmp_path / "o.mkv", codec=codec)
    with av.open(str(r.output)) as c:
        assert c.streams.video[0].average_rate == Fraction(30000, 1001)
