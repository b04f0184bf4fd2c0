"""io/probe.py: what ``vsrkit probe`` reports, as JSON and as a table."""

import json

import pytest

from tests.media import make_audio
from vsrkit.errors import InputError
from vsrkit.io.probe import format_probe, probe


def test_probe_h264_aac(h264_aac):
    info = probe(h264_aac)
    assert json.loads(json.dumps(info)) == info  # JSON-able as it is
    assert info["container"].startswith("mov,mp4")
    assert info["duration"] == pytest.approx(20 * 1001 / 30000, abs=0.03)
    v, a = info["streams"][0], info["streams"][1]
    assert (v["type"], v["codec"], v["width"], v["height"]) == ("video", "h264", 64, 48)
    assert (v["fps"], v["frames"], v["bit_depth"], v["vfr"], v["rotation"]) == (
        "30000/1001", 20, 8, False, 0)
    assert (a["type"], a["codec"], a["sample_rate"], a["layout"]) == ("audio", "aac", 48000, "stereo")
    assert [c["title"] for c in info["chapters"]] == ["One", "Two"]
    assert info["metadata"]["title"] == "hello"
    table = format_probe(info)
    for text in ("64x48", "30000/1001 fps = 29.970", "20 frames", "48000 Hz", "chapter", "title: hello"):
        assert text in table


def test_probe_depth_color_rotation_vfr_subtitles(hevc10, rotated, vfr, subs):
    v = probe(hevc10)["streams"][0]
    assert (v["bit_depth"], v["pix_fmt"]) == (10, "yuv420p10le")
    assert (v["color_primaries"], v["color_transfer"], v["color_matrix"], v["color_range"]) == (
        "bt2020", "smpte2084", "bt2020nc", "tv")
    assert v["hdr"]["max_cll"] == 1000 and v["hdr"]["luminance_min_max"] == [0.0001, 1000.0]
    assert "bt2020/smpte2084/bt2020nc/tv" in format_probe(probe(hevc10))
    assert "HDR10 mastering 1000/0.0001 cd/m2 MaxCLL 1000 MaxFALL 400" in format_probe(probe(hevc10))
    json.dumps(probe(hevc10))
    v = probe(rotated)["streams"][0]
    assert (v["rotation"], v["sar"]) == (90, "4/3")
    assert "rotation 90" in format_probe(probe(rotated))
    assert probe(vfr)["streams"][0]["vfr"] and "(variable)" in format_probe(probe(vfr))
    streams = probe(subs)["streams"]
    assert [s["type"] for s in streams] == ["video", "audio", "subtitle", "attachment"]
    assert (streams[1]["language"], streams[1]["title"]) == ("fra", "French")


def test_probe_image_sequence(images16):
    info = probe(images16)
    v = info["streams"][0]
    assert info["container"] == "image sequence"
    assert (v["frames"], v["bit_depth"], v["fps"]) == (11, 16, "30")
    assert "11 frames" in format_probe(info)


def test_probe_errors_and_audio_only(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        probe(tmp_path / "missing.mkv")
    text = tmp_path / "t.mkv"
    text.write_text("hello")
    with pytest.raises(InputError, match="not a media file"):
        probe(text)
    info = probe(make_audio(tmp_path / "a.m4a"))  # probe describes what is there
    assert [s["type"] for s in info["streams"]] == ["audio"]
