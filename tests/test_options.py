import dataclasses

import pytest

from vsrkit.cli import build_parser, options_from_args
from vsrkit.errors import UsageError
from vsrkit.options import Options, parse_bytes, parse_frame_range, parse_rate, parse_time


def test_cli_defaults_equal_options_defaults():
    ns = build_parser().parse_args(["upscale", "in.mp4"])
    assert options_from_args(ns) == Options()


def test_every_field_has_a_flag_and_help():
    parser = build_parser()
    up = parser._subparsers._group_actions[0].choices["upscale"]
    dests = {a.dest for a in up._actions}
    for f in dataclasses.fields(Options):
        assert f.name in dests, f.name
        assert f.metadata["help"], f.name


def test_cli_builds_typed_options():
    ns = build_parser().parse_args(["upscale", "in.mp4", "--scale", "2.5", "--crf", "18",
                                    "--overwrite", "--color-fix", "wavelet", "--seed", "7"])
    o = options_from_args(ns)
    assert (o.scale, o.crf, o.overwrite, o.color_fix, o.seed) == (2.5, 18, True, "wavelet", 7)


@pytest.mark.parametrize("kw", [dict(scale=-1), dict(scale=2, width=100), dict(quality=11),
                                dict(crf=10, quality=5), dict(frames="5:2"),
                                dict(frames="1:3", start="1"), dict(batch_frames=4),
                                dict(color_fix="sepia"), dict(vram_budget="lots"),
                                dict(offload_blocks="some"), dict(fps="0")])
def test_bad_values_raise_usage_error_naming_the_option(kw):
    with pytest.raises(UsageError) as e:
        Options(**kw).validate()
    assert "--" in str(e.value)


def test_parsers():
    assert parse_time("90") == 90.0
    assert parse_time("01:30") == 90.0
    assert parse_time("1:00:01.5") == 3601.5
    assert parse_frame_range("3:") == (3, None)
    assert parse_frame_range(":10") == (0, 10)
    assert str(parse_rate("30000/1001")) == "30000/1001"
    assert str(parse_rate("29.97")) == "30000/1001"
    assert str(parse_rate("25")) == "25"
    assert parse_bytes("24GiB") == 24 * 2**30
