"""io/source.py on generated media: frames, exact timestamps and rates, bit depth, tags,
ranges, image sequences, and each InputError."""

import shutil
from fractions import Fraction

import av
import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from tests.io.conftest import NTSC
from tests.media import (corrupt, gradient, make_audio, make_frameless_video, make_video,
                         truncate)
from vsrkit.errors import InputError
from vsrkit.frames import ColorTags
from vsrkit.io.source import (STANDARD_RATES, VideoSource, exact_rate, is_image_sequence, list_videos,
                              natural_key, open_source, pts_to_seconds, seconds_to_pts)
from vsrkit.options import Options


def av_pts(path):
    """Timestamps of every frame as plain PyAV decodes them (the reference)."""
    with av.open(str(path)) as c:
        return [f.pts for f in c.decode(video=0)]


def err(frame, i, w, h, bits=8):
    """Mean absolute difference to gradient frame i (in 8-bit units)."""
    ref = gradient(i, w, h, bits).astype(int)
    return np.abs(frame.numpy().astype(int) - ref).mean() / (257 if bits > 8 else 1)


def read(path, **opts):
    with open_source(path, Options(**opts)) as src:
        items = list(src)
    return src.spec, [f for f, _ in items], [i for _, i in items]


# -- pure parts ------------------------------------------------------------------------------

@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=50, unique=True),
       st.sampled_from(["img", "IMG_", "frame-", ""]), st.sampled_from([".png", ".tif", ""]))
def test_natural_sort_orders_numbers_numerically(nums, prefix, ext):
    names = [f"{prefix}{n}{ext}" for n in nums]
    assert sorted(names, key=natural_key) == [f"{prefix}{n}{ext}" for n in sorted(nums)]


@given(st.lists(st.text("ab0129_-.", max_size=8), min_size=2, max_size=20))
def test_natural_key_is_a_total_order(names):
    ordered = sorted(names, key=natural_key)
    assert sorted(ordered, key=natural_key) == ordered  # stable: no comparison errors either
    for a, b in zip(ordered, ordered[1:]):
        assert natural_key(a) <= natural_key(b)


@given(st.integers(0, 10**9), st.sampled_from([Fraction(1, 90000), Fraction(1, 1000),
                                              Fraction(1001, 30000), Fraction(1, 15360)]))
def test_timestamp_mapping_round_trips(pts, tb):
    assert seconds_to_pts(pts_to_seconds(pts, tb), tb) == pts


@given(st.integers(0, 10**7), st.sampled_from([Fraction(1, 90000), Fraction(1, 1000)]),
       st.sampled_from([Fraction(1, 30000), Fraction(1, 48000), Fraction(1, 1000)]))
def test_timestamp_mapping_between_time_bases_is_nearest(pts, a, b):
    q = seconds_to_pts(pts_to_seconds(pts, a), b)
    assert abs(q * b - pts * a) <= b / 2


@given(st.sampled_from(STANDARD_RATES), st.integers(0, 2000))
def test_rate_measured_on_millisecond_timestamps_snaps_back(rate, extra):
    n = int(rate) + 2 + extra  # frames: enough that ms rounding stays under half the gap
    span_ms = round(Fraction(n - 1) / rate * 1000)  # MKV stores the span in milliseconds
    measured = Fraction(n - 1) / Fraction(span_ms, 1000)
    assert exact_rate(measured) == rate
    assert exact_rate(measured, declared=rate) == rate


@given(st.fractions(Fraction(1, 10), Fraction(1000)))
def test_rate_declared_only_when_it_agrees(measured):
    assert exact_rate(measured, declared=Fraction(90000)) == exact_rate(measured)
    assert exact_rate(Fraction(30)) == 30 and exact_rate(Fraction(30000, 1001)) == Fraction(30000, 1001)


# -- video files -----------------------------------------------------------------------------

def test_h264_spec_frames_and_every_timestamp(h264_aac):
    spec, frames, infos = read(h264_aac)
    assert (spec.width, spec.height, spec.codec, spec.bit_depth) == (64, 48, "h264", 8)
    assert spec.frame_rate == NTSC and isinstance(spec.frame_rate, Fraction)
    assert spec.frames == 20 and not spec.vfr and not spec.is_image_sequence
    assert spec.duration == pytest.approx(20 / float(NTSC), abs=1e-3)
    assert len(frames) == 20
    assert all(f.dtype == torch.uint8 and f.shape == (48, 64, 3) for f in frames)
    assert [i.index for i in infos] == list(range(20))
    assert [i.pts for i in infos] == av_pts(h264_aac)
    assert all(i.time_base == spec.time_base for i in infos)
    # the content is the moving gradient (lossy H.264: close, and frames differ)
    assert err(frames[3], 3, 64, 48) < 10 < err(frames[3], 8, 64, 48)
    assert not torch.equal(frames[0], frames[1])


def test_hevc_10bit_is_uint16_full_scale_with_color_tags(hevc10):
    spec, frames, _ = read(hevc10)
    assert spec.bit_depth == 10 and spec.pix_fmt == "yuv420p10le" and spec.codec == "hevc"
    assert spec.color == ColorTags("bt2020", "smpte2084", "bt2020nc", "tv")
    assert len(frames) == 8 and all(f.dtype == torch.uint16 for f in frames)
    assert int(frames[0].numpy().max()) > 60000  # full 16-bit scale, not 10-bit values
    assert err(frames[0], 0, 64, 48, 16) < 10 < err(frames[0], 5, 64, 48, 16)


def test_vfr_timestamps_kept_and_flagged(vfr, h264_aac):
    spec, frames, infos = read(vfr)
    pts = [i.pts for i in infos]
    assert spec.vfr and len(frames) == 15
    assert pts == av_pts(vfr)
    steps = np.diff(pts)
    assert steps.max() > 1.4 * steps.min()  # really variable
    assert not read(h264_aac, frames="0:2")[0].vfr


def test_rotation_and_sample_aspect_ratio(rotated):
    spec, frames, _ = read(rotated)
    assert spec.rotation == 90 and spec.sample_aspect_ratio == Fraction(4, 3)
    assert frames[0].shape == (32, 48, 3)  # frames stay as stored; the tag travels


def test_odd_size(odd):
    spec, frames, _ = read(odd)
    assert (spec.width, spec.height) == (51, 37)
    assert len(frames) == 5 and all(f.shape == (37, 51, 3) for f in frames)
    assert err(frames[4], 4, 51, 37) < 10 < err(frames[4], 1, 51, 37)


def test_frame_range_restarts_index(h264_aac):
    spec, frames, infos = read(h264_aac, frames="3:9")
    assert spec.frames == 6 and len(frames) == 6
    assert [i.index for i in infos] == list(range(6))
    assert [i.pts for i in infos] == av_pts(h264_aac)[3:9]
    _, all_frames, _ = read(h264_aac)
    assert all(torch.equal(a, b) for a, b in zip(frames, all_frames[3:9]))
    spec, frames, infos = read(h264_aac, frames="15:")
    assert len(frames) == 5 and [i.pts for i in infos] == av_pts(h264_aac)[15:]


def test_time_range(media_dir):
    clip = make_video(media_dir / "t25.mkv", frames=25, rate=25)
    spec, frames, infos = read(clip, start="0.2", end="0.4")  # frames 5..9 (k / 25 s)
    assert spec.frames is None  # known only after decoding
    assert [round(i.seconds * 25) for i in infos] == [5, 6, 7, 8, 9]
    assert [i.index for i in infos] == list(range(5))
    _, frames, _ = read(clip, start="00:00:00.9")
    assert len(frames) == 2


@pytest.mark.parametrize("ext,vfr", [(".mp4", False), (".mkv", True)])
def test_late_range_seeks_and_equals_decoding_from_the_start(tmp_path, monkeypatch, ext, vfr):
    clip = make_video(tmp_path / f"long{ext}", frames=120, gop=10, vfr=vfr)
    _, all_frames, all_infos = read(clip)
    decoded = []
    real = VideoSource._decode

    def counted(self):
        for ev in real(self):
            decoded.append(ev)
            yield ev

    monkeypatch.setattr(VideoSource, "_decode", counted)
    _, frames, infos = read(clip, frames="95:103")
    assert len(decoded) < 40  # reached by seeking, not by decoding 95 frames
    assert [i.pts for i in infos] == [i.pts for i in all_infos[95:103]]
    assert all(torch.equal(a, b) for a, b in zip(frames, all_frames[95:103]))
    t0 = all_infos[90].seconds
    _, frames, infos = read(clip, start=str(t0))
    assert [i.pts for i in infos] == [i.pts for i in all_infos[90:]]
    assert all(torch.equal(a, b) for a, b in zip(frames, all_frames[90:]))


# -- damaged files ---------------------------------------------------------------------------

@pytest.mark.parametrize("ext,bframes", [(".mp4", 0), (".mov", 3)])
def test_corrupt_mid_stream_names_frame_and_time_or_conceals(tmp_path, ext, bframes):
    clip = make_video(tmp_path / f"c{ext}", frames=60, bframes=bframes, size=(96, 64))
    reference = av_pts(clip)
    corrupt(clip, at=0.5)
    with pytest.raises(InputError, match=r"corrupt stream at frame \d+ \(\d+\.\d+ s\).*--ignore-errors"):
        read(clip)
    notes = []
    with open_source(clip, Options(ignore_errors=True), notice=notes.append) as src:
        items = list(src)
    assert [i.pts for _, i in items] == reference  # every frame, at its own time
    assert len(notes) == 1 and "repeated" in notes[0]
    # a concealed frame repeats the last good one
    frames = [f for f, _ in items]
    assert any(torch.equal(a, b) for a, b in zip(frames, frames[1:]))


def test_truncated_file_reported_or_kept(tmp_path):
    clip = truncate(make_video(tmp_path / "t.mkv", frames=60), 0.6)
    with pytest.raises(InputError, match=r"ends at \d+\.\d+ s \(after \d+ frames\) but its header says 2\.000 s"):
        read(clip)
    notes = []
    with open_source(clip, Options(ignore_errors=True), notice=notes.append) as src:
        n = sum(1 for _ in src)
    assert 0 < n < 60 and len(notes) == 1 and f"keeping the {n} frames" in notes[0]


def test_input_errors(tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video at all")
    cases = {
        tmp_path / "missing.mp4": "no such file",
        text: "not a media file",
        make_audio(tmp_path / "audio.m4a"): "no video stream",
        make_frameless_video(tmp_path / "frameless.mkv"): "zero frames",
    }
    for path, message in cases.items():
        with pytest.raises(InputError, match=message):
            open_source(path, Options())
    clip = make_video(tmp_path / "short.mkv", frames=4)
    with pytest.raises(InputError, match="zero frames in the selected range"):
        read(clip, frames="10:20")
    with pytest.raises(InputError, match="not after"):
        open_source(clip, Options(start="2", end="1"))


# -- image sequences -------------------------------------------------------------------------

def test_image_folder_natural_order_exact_values(images8):
    spec, frames, infos = read(images8)
    assert spec.is_image_sequence and spec.frames == 11 and spec.bit_depth == 8
    assert spec.frame_rate == 30 and spec.time_base == Fraction(1, 30)
    assert [i.pts for i in infos] == list(range(11))
    # img10.png is the 10th frame, not the 2nd; PNG is lossless: exact values
    assert all(np.array_equal(f.numpy(), gradient(i, 40, 30)) for i, f in enumerate(frames))


def test_image_folder_16bit_fps_and_range(images16):
    spec, frames, infos = read(images16, fps="24000/1001", frames="2:5")
    assert spec.bit_depth == 16 and spec.frame_rate == Fraction(24000, 1001)
    assert spec.frames == 3 and [i.index for i in infos] == [0, 1, 2]
    assert all(f.dtype == torch.uint16 for f in frames)
    assert np.array_equal(frames[0].numpy(), gradient(2, 40, 30, 16))


def test_image_glob_jpeg_and_tiff(tmp_path):
    from tests.media import make_image_sequence

    folder = make_image_sequence(tmp_path / "mixed", frames=3, ext="jpg", size=(32, 24))
    make_image_sequence(folder, frames=2, ext="tiff", bit_depth=16, names="z{}", size=(32, 24))
    spec, frames, _ = read(folder / "img*.jpg")
    assert spec.frames == 3 and spec.bit_depth == 8
    assert err(frames[2], 2, 32, 24) < 10 < err(frames[2], 0, 32, 24)
    spec, frames, _ = read(str(folder / "z*.tiff"))
    assert spec.bit_depth == 16 and np.array_equal(frames[1].numpy(), gradient(1, 32, 24, 16))


def test_unreadable_image_reported_or_concealed(tmp_path, images8):
    folder = shutil.copytree(images8, tmp_path / "seq")
    (folder / "img4.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match=r"img4.png: not a readable image .*frame 3"):
        read(folder)
    notes = []
    with open_source(folder, Options(ignore_errors=True), notice=notes.append) as src:
        frames = [f for f, _ in src]
    assert len(frames) == 11 and torch.equal(frames[3], frames[2]) and len(notes) == 1


def test_folder_of_videos_is_not_an_image_sequence(tmp_path, images8):
    folder = tmp_path / "videos"
    folder.mkdir()
    for name in ("clip10.mp4", "clip2.mkv", "notes.txt"):
        (folder / name).write_bytes(b"")
    shutil.copy(images8 / "img1.png", folder / "poster.png")
    assert is_image_sequence(images8) and is_image_sequence(str(images8 / "*.png"))
    bracketed = folder / "clip [1080p].mkv"  # an existing file is never a pattern
    bracketed.write_bytes(b"")
    assert not is_image_sequence(bracketed)
    assert not is_image_sequence(folder)
    assert [f.name for f in list_videos(folder)] == ["clip2.mkv", "clip10.mp4", "clip [1080p].mkv"]
    with pytest.raises(InputError, match="videos, not an image sequence"):
        open_source(folder, Options())
    with pytest.raises(InputError, match="no PNG/JPEG/TIFF"):
        open_source(tmp_path / "nothing*.png", Options())
