"""The CLI end to end, as a user runs it: real subprocesses, real files, exit codes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import pytest

from tests.media import make_video

VSRKIT = [sys.executable, "-m", "vsrkit"]


def cli(*args, cwd=None, timeout=120):
    return subprocess.run([*VSRKIT, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=timeout)


def count_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("cli") / "clip.mp4", frames=12, size=(64, 48),
                      audio="aac")


def test_upscale_default_name_and_frames(clip, tmp_path):
    src = tmp_path / "in.mp4"
    src.write_bytes(clip.read_bytes())
    r = cli("upscale", src, "--model", "lanczos", "--scale", "2", "--quiet")
    assert r.returncode == 0, r.stderr
    outs = [p for p in tmp_path.iterdir() if p.name.startswith("in_x2")]
    assert len(outs) == 1, list(tmp_path.iterdir())
    with av.open(str(outs[0])) as c:
        v = c.streams.video[0]
        assert (v.codec_context.width, v.codec_context.height) == (128, 96)
        assert len(c.streams.audio) == 1
    assert count_frames(outs[0]) == 12


def test_dry_run_prints_plan_and_writes_nothing(clip, tmp_path):
    out = tmp_path / "o.mkv"
    r = cli("upscale", clip, "-o", out, "--model", "bicubic", "--width", "100", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert "64x48 -> 100x75" in r.stdout
    assert not out.exists()


@pytest.mark.parametrize("args,code,words", [
    (["upscale", "{missing}", "--model", "lanczos"], 3, "no such"),
    (["upscale", "{notmedia}", "--model", "lanczos"], 3, ""),
    (["upscale", "{clip}", "-o", "{clip}", "--model", "lanczos"], 4, "input"),
    (["upscale", "{clip}", "-o", "{existing}", "--model", "lanczos"], 4, "--overwrite"),
    (["upscale", "{clip}", "-o", "{nofolder}", "--model", "lanczos"], 4, "folder"),
    (["upscale", "{clip}", "--model", "lanczos", "--quality", "11"], 2, "--quality"),
    (["upscale", "{clip}", "--model", "nosuchmodel"], 2, "--model"),
    (["upscale", "{clip}", "--model", "lanczos", "--scale", "2", "--width", "9"], 2, "--scale"),
    (["upscale", "{clip}", "--model", "lanczos", "--device", "cuda:7"], 6, "cuda"),
])
def test_errors_are_one_line_with_exit_code(clip, tmp_path, args, code, words):
    if code == 6 and __import__("torch").cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    notmedia = tmp_path / "notes.mp4"
    notmedia.write_text("not a video")
    existing = tmp_path / "exists.mkv"
    existing.write_bytes(b"x")
    subs = dict(missing=tmp_path / "missing.mp4", notmedia=notmedia, clip=clip,
                existing=existing, nofolder=tmp_path / "no" / "such" / "out.mkv")
    r = cli(*[a.format(**subs) for a in args])
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("vsrkit: error:"), r.stderr
    assert words.lower() in lines[0].lower()
    assert "Traceback" not in r.stderr
    assert existing.read_bytes() == b"x"  # nothing the user had is lost


def test_sigterm_leaves_a_valid_partial_file(tmp_path):
    src = make_video(tmp_path / "long.mp4", frames=400, size=(96, 64), audio="aac")
    out = tmp_path / "long_out.mkv"
    p = subprocess.Popen([*VSRKIT, "upscale", str(src), "-o", str(out), "--model", "lanczos",
                          "--scale", "4", "--codec", "ffv1"], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    partial = tmp_path / "long_out.partial.mkv"
    # wait until encoding has started (the temporary file grows), then stop it
    while time.monotonic() < deadline and not any(
            f.stat().st_size > 50_000 for f in tmp_path.iterdir() if f.name not in (src.name,)):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err
    assert not out.exists()
    assert partial.exists(), (err, list(tmp_path.iterdir()))
    n = count_frames(partial)
    assert 0 < n < 400
    assert str(n) in err and "partial" in err
    leftovers = [f for f in tmp_path.iterdir() if f.name not in (src.name, partial.name)]
    assert not leftovers, leftovers


def test_probe_table_and_json(clip):
    r = cli("probe", clip)
    assert r.returncode == 0, r.stderr
    assert "64" in r.stdout and "48" in r.stdout
    r = cli("probe", clip, "--json")
    import json

    info = json.loads(r.stdout)
    assert info


def test_models_lists_classical_engines():
    r = cli("models")
    assert r.returncode == 0, r.stderr
    for m in ("lanczos", "bicubic", "nearest"):
        assert m in r.stdout
