"""The page's form and command line, without a browser: built from Options, round-tripping
through the real CLI parser."""

import dataclasses
import os
import shlex

import pytest

from vsrkit.cli import build_parser, options_from_args
from vsrkit.errors import InputError, UsageError
from vsrkit.options import Options
from vsrkit.ui import form
from vsrkit.ui.command import cli_command, option_flags


def test_defaults_give_no_flags():
    assert option_flags(Options()) == []
    assert cli_command("in.mp4", None, Options()) == "vsrkit upscale in.mp4"


@pytest.mark.parametrize("opts", [
    Options(model="lanczos", scale=2.0),
    Options(model="bicubic", width=1280, codec="ffv1", no_audio=True, start="1.5", end="00:03"),
    Options(model="nearest", resolution=720, crf=20, color_fix="none", seed=7, frames="3:9",
            vram_budget="24GiB", offload_blocks="auto", tiled_vae=True, sparse_ratio=1.5),
])
def test_command_parses_back_to_the_same_options(opts):
    cmd = cli_command("my clip.mp4", "out dir/o.mkv", opts)
    argv = shlex.split(cmd)
    assert argv[:2] == ["vsrkit", "upscale"]
    ns = build_parser().parse_args(argv[1:])
    assert (ns.input, ns.output) == ("my clip.mp4", "out dir/o.mkv")
    assert options_from_args(ns) == opts


def test_scale_prints_as_an_integer_when_whole():
    assert option_flags(Options(scale=2.0)) == ["--scale", "2"]
    assert option_flags(Options(scale=1.5)) == ["--scale", "1.5"]


def test_every_field_is_on_the_page_once():
    placed = set(form.MAIN_FIELDS) | set(form.PAGE_FIELDS)
    adv = [f.name for fields in form.advanced_groups().values() for f in fields]
    assert len(adv) == len(set(adv)) and not placed & set(adv)
    assert placed | set(adv) == {f.name for f in dataclasses.fields(Options)}


def test_widget_defaults_build_the_default_options():
    """What an untouched form sends (empty boxes, "native", "default") is Options()."""
    raw = {}
    for f in dataclasses.fields(Options):
        if f.name in form.PAGE_FIELDS:
            continue
        kind = form.widget_kind(f)
        raw[f.name] = "" if f.default is None and kind != "dropdown" else f.default
    raw["variant"], raw["scale"] = "default", "native"
    assert form.build_options(raw) == Options()


def test_size_mode_keeps_only_its_fields():
    vals = {"model": "lanczos", "scale": "3", "resolution": "720", "width": "100", "height": ""}
    assert form.build_options(vals, form.SIZE_MODES[0]) == Options(model="lanczos", scale=3.0)
    assert form.build_options(vals, form.SIZE_MODES[1]) == Options(model="lanczos",
                                                                   resolution=720)
    assert form.build_options(vals, form.SIZE_MODES[2]) == Options(model="lanczos", width=100)


def test_bad_values_are_usage_errors_naming_the_flag():
    with pytest.raises(UsageError, match="--crf"):
        form.build_options({"model": "lanczos", "crf": "2.5"})
    with pytest.raises(UsageError, match="--scale"):
        form.build_options({"model": "lanczos", "scale": "-1"})


def test_models_and_variants():
    ids = [v for _, v in form.model_choices()]
    assert {"lanczos", "bicubic", "nearest"} <= set(ids)
    assert form.default_model() in ids
    assert form.variant_choices("lanczos") == ["default"]
    assert form.native_scale("lanczos") == 2
    assert form.scale_choices(2)[0] == ("native (2×)", "native")


def test_share_paths_confine_server_files(tmp_path):
    shared, secret = tmp_path / "shared", tmp_path / "secret"
    shared.mkdir()
    secret.mkdir()
    (shared / "a.mp4").write_bytes(b"x")
    (secret / "b.mp4").write_bytes(b"x")
    os.symlink(secret / "b.mp4", shared / "link.mp4")
    assert form.check_share_path(shared / "a.mp4", [shared]) == (shared / "a.mp4").resolve()
    for bad in (secret / "b.mp4", shared / ".." / "secret" / "b.mp4", shared / "link.mp4"):
        with pytest.raises(InputError, match="outside"):
            form.check_share_path(bad, [shared])
    with pytest.raises(InputError, match="no such"):
        form.check_share_path(shared / "missing.mp4", [shared])
    with pytest.raises(InputError, match="--share-path"):
        form.check_share_path(shared / "a.mp4", [])
