"""Clips for the io tests, generated once per session with PyAV (tests/media.py). Tests must
not modify them (damage a copy in tmp_path)."""

from fractions import Fraction

import pytest

from tests.media import make_image_sequence, make_video

NTSC = Fraction(30000, 1001)
HDR10 = dict(color_primaries=9, color_trc=16, colorspace=9, color_range=1)
STREAM_TAGS = {"audio": {"language": "fra", "title": "French"},
               "subtitle": {"language": "deu", "disposition": "forced"}}


@pytest.fixture(scope="session")
def h264_aac(media_dir):
    """MP4: 20 frames at 30000/1001, AAC, a title, two chapters."""
    return make_video(media_dir / "h264_aac.mp4", frames=20, rate=NTSC, audio="aac",
                      metadata={"title": "hello"}, chapters=True)


@pytest.fixture(scope="session")
def hevc10(media_dir):
    """MKV: HEVC 10-bit, BT.2020 PQ tags, HDR10 mastering display and light level."""
    return make_video(media_dir / "hevc10.mkv", frames=8, codec="libx265",
                      pix_fmt="yuv420p10le", color=HDR10, hdr=True)


@pytest.fixture(scope="session")
def vfr(media_dir):
    """MP4 whose frame steps vary (1x, 1.5x, 2x of 1/30 s) in a 1/90000 time base."""
    return make_video(media_dir / "vfr.mp4", frames=15, vfr=True)


@pytest.fixture(scope="session")
def subs(media_dir):
    """MKV: AAC (French, titled), a SubRip track (German, forced), two chapters, a font."""
    return make_video(media_dir / "subs.mkv", frames=10, audio="aac", subtitles=True,
                      chapters=True, stream_tags=STREAM_TAGS, attachment=True)


@pytest.fixture(scope="session")
def pcm_mov(media_dir):
    return make_video(media_dir / "pcm.mov", frames=10, audio="pcm_s16le")


@pytest.fixture(scope="session")
def rotated(media_dir):
    """MP4 with a 90 degree display matrix and a 4:3 sample aspect ratio."""
    return make_video(media_dir / "rotated.mp4", frames=6, size=(48, 32), rotation=90,
                      sar=Fraction(4, 3))


@pytest.fixture(scope="session")
def odd(media_dir):
    """51x37 (odd both ways), 4:4:4."""
    return make_video(media_dir / "odd.mkv", frames=5, size=(51, 37), pix_fmt="yuv444p")


@pytest.fixture(scope="session")
def images8(media_dir):
    """img1.png ... img11.png (natural order differs from lexical), 40x30."""
    return make_image_sequence(media_dir / "seq8", frames=11)


@pytest.fixture(scope="session")
def images16(media_dir):
    return make_image_sequence(media_dir / "seq16", frames=11, bit_depth=16)
