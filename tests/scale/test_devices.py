"""--devices: one worker process per device, segments encoded by the workers and appended to
the output in order by the parent. On this CPU-only machine the workers are ``cpu,cpu`` (a
device may be repeated)."""

import json
import math
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import av
import numpy as np
import pytest

import vsrkit
from tests.media import corrupt, make_video
from tests.scale.test_segments import VSRKIT, audio_hashes, frame_hashes
from vsrkit.scale.segments import work_dir


def cli(*args, timeout=300, **kw):
    return subprocess.run([*VSRKIT, "upscale", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, **kw)


def children(pid: int) -> list[int]:
    """Live worker processes (multiprocessing spawn children) whose parent is ``pid``."""
    out = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid and fields[0] != "Z" and \
                    b"spawn_main" in (p / "cmdline").read_bytes():
                out.append(int(p.name))
    return out


def gone(pids, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not [p for p in pids if Path(f"/proc/{p}").exists()
                and "Z" not in (Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()[:1])]:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("dev") / "clip.mkv", frames=90, size=(48, 32),
                      audio="aac")


def test_cpu_workers_equal_unbroken_run_cli(clip, tmp_path):
    """Two worker processes, default segment plan: every frame and timestamp of an unbroken
    run (FFV1, intra-only: packets copied give the same frames), audio copied once."""
    ref = tmp_path / "ref.mkv"
    vsrkit.upscale(clip, ref, model="lanczos", scale=2, codec="ffv1")
    out = tmp_path / "dev.mkv"
    r = cli(clip, "-o", out, "--model", "lanczos", "--scale", "2", "--codec", "ffv1",
            "--devices", "cpu,cpu")
    assert r.returncode == 0, r.stderr
    # the plan line: 2 segments for 2 workers (a stateless engine recomputes nothing)
    assert "2 segment(s) of 45 frames on cpu, cpu; warm-up and look-ahead recompute 0 frames" \
        in r.stderr, r.stderr
    assert frame_hashes(out) == frame_hashes(ref)
    assert len(frame_hashes(out)) == 90
    assert audio_hashes(out) == audio_hashes(clip)
    assert not work_dir(out).exists()


def _rgb(path) -> list:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.float64) for f in c.decode(video=0)]


def _psnr(a, b) -> float:
    mse = float(((a - b) ** 2).mean())
    return 99.0 if mse == 0 else 10 * math.log10(255 ** 2 / mse)


def test_h264_bframes_vfr_segments_keep_timestamps(tmp_path):
    """An inter-frame codec with B-frames on a variable-rate input: segment packets copied
    one after the other keep every timestamp of the unbroken run, and one or two workers
    encode the frames of the lossless run with the same cuts, each in its place.

    Not bit for bit: x264's threads read a VFR frame's duration from the next frame when it
    has arrived, so the same frames encode to other bits from run to run (seen for one worker
    as for two). The lossless run pins the frames: each H.264 frame is >= 27 dB from its own
    frame (30 dB seen) and a neighbour's would be <= 23 dB."""
    clip = make_video(tmp_path / "vfr.mkv", frames=60, size=(48, 32), vfr=True, audio="aac")
    ref = tmp_path / "ref.mkv"
    vsrkit.upscale(clip, ref, model="lanczos", scale=2, codec="h264")
    lossless = tmp_path / "lossless.mkv"
    vsrkit.upscale(clip, lossless, model="lanczos", scale=2, codec="ffv1", segment_frames=16)
    want = _rgb(lossless)
    assert min(_psnr(a, b) for a, b in zip(want[1:], want[:-1])) < 27  # neighbours tell apart
    before = set(children(os.getpid()))
    for out, devs in ((tmp_path / "one.mkv", "cpu"), (tmp_path / "two.mkv", "cpu,cpu")):
        vsrkit.upscale(clip, out, model="lanczos", scale=2, codec="h264", segment_frames=16,
                       devices=devs)
        got = _rgb(out)
        assert len(got) == len(want) == 60
        assert min(_psnr(a, b) for a, b in zip(got, want)) >= 27, devs
        assert [p for _, p in frame_hashes(out)] == [p for _, p in frame_hashes(ref)]
        with av.open(str(out)) as c:
            assert c.streams.video[0].codec_context.name == "h264"
            assert c.streams.video[0].codec_context.has_b_frames
        assert audio_hashes(out) == audio_hashes(clip)
    assert gone(set(children(os.getpid())) - before, within=10), "a worker outlived its run"


def test_png_folder_output_from_segments(clip, tmp_path):
    ref, out = tmp_path / "ref", tmp_path / "out"
    vsrkit.upscale(clip, ref, model="lanczos", scale=2, frames="10:40")
    vsrkit.upscale(clip, out, model="lanczos", scale=2, frames="10:40", segment_frames=8,
                   devices="cpu,cpu")
    a, b = sorted(ref.iterdir()), sorted(out.iterdir())
    assert [p.name for p in a] == [p.name for p in b] and len(a) == 30
    assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b))


def test_tiny_flashvsr_two_workers_bit_identical(tmp_path, monkeypatch):
    """A stateful model (warm-up, look-ahead, frame grid, per-frame noise) on two CPU workers
    gives exactly the frames of one worker making the same segments. Every worker on one thread
    (OMP_NUM_THREADS, which the workers honour): by default one worker would take both cores
    and two one each, and fp32 sums in another order differ by ~6e-6 (seen on an AVX-512 Xeon),
    enough to flip an 8-bit level."""
    from tests.engines.flashvsr.tiny import make_tiny_flashvsr

    monkeypatch.setenv("OMP_NUM_THREADS", "1")

    w = make_tiny_flashvsr(tmp_path / "w")
    clip = make_video(tmp_path / "c.mkv", frames=48, size=(32, 32), audio="aac")
    common = dict(model="flashvsr-v1.1", weights=str(w), codec="ffv1", segment_frames=24)
    vsrkit.upscale(clip, tmp_path / "one.mkv", devices="cpu", **common)
    r = vsrkit.upscale(clip, tmp_path / "two.mkv", devices="cpu,cpu", **common)
    assert r.frames == 48
    one, two = frame_hashes(tmp_path / "one.mkv"), frame_hashes(tmp_path / "two.mkv")
    assert len(one) == 48 and one == two
    assert audio_hashes(tmp_path / "two.mkv") == audio_hashes(clip)


def test_worker_error_is_one_line_and_resumable(tmp_path):
    """A corrupt frame (88) in the third segment fails its worker: the other stops, the run
    ends with one line naming device, segment and cause, the finished segments are kept, and
    the same command resumes from them. (MP4: the header counts the frames, so only the
    worker that decodes frame 88 meets the damage.)"""
    clip = make_video(tmp_path / "bad.mp4", frames=120, size=(48, 32))
    corrupt(clip, at=0.7, length=50)
    out = tmp_path / "out.mkv"
    args = [clip, "-o", out, "--model", "lanczos", "--scale", "2", "--codec", "ffv1",
            "--segment-frames", "30", "--devices", "cpu,cpu"]
    r = cli(*args)
    assert r.returncode == 3, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("vsrkit: error:")]
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    assert "cpu, segment 3/4: " in lines[0] and "corrupt stream at frame 88" in lines[0], lines[0]
    assert "segments are kept in" in lines[0] and "run the same command again" in lines[0]
    manifest = json.loads((work_dir(out) / "manifest.json").read_text())
    done = [s["index"] for s in manifest["segments"] if s["done"]]
    assert {0, 1} <= set(done) and 2 not in done
    assert not out.exists()
    r2 = cli(*args)
    assert r2.returncode == 3
    assert f"resuming: {len(done)}/4 segments already done" in r2.stderr, r2.stderr


def _killed_run(tmp_path, clip, out, how):
    """Start a --devices cpu,cpu CLI run, stop it with ``how`` once a segment is done and both
    workers are up (on a loaded machine the first worker can finish a segment before the
    second has started)."""
    cmd = [*VSRKIT, "upscale", str(clip), "-o", str(out), "--model", "lanczos", "--scale", "2",
           "--codec", "ffv1", "--segment-frames", "20", "--devices", "cpu,cpu"]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, start_new_session=True)
    manifest = work_dir(out) / "manifest.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and p.poll() is None:
        try:
            done = any(s["done"] for s in json.loads(manifest.read_text())["segments"])
        except (OSError, ValueError, KeyError):
            done = False
        if done and len(children(p.pid)) >= 2:
            break
        time.sleep(0.05)
    time.sleep(random.Random(7).uniform(0.0, 0.3))
    assert p.poll() is None, "the run finished before it could be stopped"
    workers = children(p.pid)
    how(p)
    err = p.communicate(timeout=60)[1]
    return p.returncode, err, workers, cmd


def test_sigkill_parent_workers_exit_and_resume_is_identical(tmp_path):
    clip = make_video(tmp_path / "long.mkv", frames=160, size=(64, 48), audio="aac")
    ref = tmp_path / "ref.mkv"
    vsrkit.upscale(clip, ref, model="lanczos", scale=2, codec="ffv1")
    out = tmp_path / "out.mkv"
    code, _, workers, cmd = _killed_run(tmp_path, clip, out, lambda p: p.send_signal(signal.SIGKILL))
    assert code == -signal.SIGKILL
    assert len(workers) == 2
    assert gone(workers, within=30), "worker processes outlived their killed parent"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming:" in r.stderr
    assert frame_hashes(out) == frame_hashes(ref)
    assert audio_hashes(out) == audio_hashes(clip)
    assert not work_dir(out).exists()


def test_ctrl_c_stops_workers_keeps_partial_and_resumes(tmp_path):
    """Ctrl-C in a terminal reaches the whole process group: the workers ignore it, the parent
    stops them, keeps a playable partial file and exits 130 with one line."""
    clip = make_video(tmp_path / "long.mkv", frames=160, size=(64, 48), audio="aac")
    ref = tmp_path / "ref.mkv"
    vsrkit.upscale(clip, ref, model="lanczos", scale=2, codec="ffv1")
    out = tmp_path / "out.mkv"
    code, err, workers, cmd = _killed_run(
        tmp_path, clip, out, lambda p: os.killpg(p.pid, signal.SIGINT))
    assert code == 130, err
    assert "Traceback" not in err
    assert [ln for ln in err.splitlines() if ln.startswith("vsrkit: stopped (SIGINT)")], err
    partial = out.with_name("out.partial.mkv")
    assert partial.exists()
    with av.open(str(partial)) as c:
        n = sum(1 for _ in c.decode(video=0))
    assert n > 0 and n % 20 == 0  # whole segments, in order
    assert frame_hashes(partial) == frame_hashes(ref)[:n]
    assert gone(workers, within=15)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert frame_hashes(out) == frame_hashes(ref)


def test_devices_checked_before_work(clip, tmp_path, capsys):
    from vsrkit.cli import main

    assert main(["upscale", str(clip), "-o", str(tmp_path / "o.mkv"), "--model", "lanczos",
                 "--devices", "cpu,cuda:3"]) == 6
    assert capsys.readouterr().err.strip().splitlines() == [
        "vsrkit: error: --devices cuda:3: CUDA is not available on this machine"]


def test_dry_run_shows_segment_plan_and_overhead(clip, capsys):
    from vsrkit.cli import main

    assert main(["upscale", str(clip), "--model", "lanczos", "--devices", "cpu,cpu",
                 "--dry-run"]) == 0
    assert "note: 2 segment(s) of 45 frames on cpu, cpu; warm-up and look-ahead recompute " \
           "0 frames (+0.0 %)" in capsys.readouterr().out


def test_resume_keeps_cuts_of_an_earlier_run_with_other_devices(tmp_path):
    """Planned cuts depend on the number of workers; a resumed run keeps the earlier run's cuts
    (and its finished segments) instead of starting over."""
    clip = make_video(tmp_path / "c.mkv", frames=1300, size=(16, 16))
    out = tmp_path / "o.mkv"
    token = vsrkit.CancelToken()

    def stop_after_first(e):
        if e.message and e.message.startswith("segment 1/3 done"):
            token.cancel("test")

    with pytest.raises(vsrkit.Interrupted):
        vsrkit.upscale(clip, out, model="nearest", scale=2, codec="ffv1",
                       devices="cpu", on_event=stop_after_first, cancel=token)  # 3 cuts
    said = []
    vsrkit.upscale(clip, out, model="nearest", scale=2, codec="ffv1", devices="cpu,cpu",
                   notice=said.append)  # 2 workers would plan 4
    assert "resuming: 1/3 segments already done" in " ".join(said), said
    ref = tmp_path / "ref.mkv"
    vsrkit.upscale(clip, ref, model="nearest", scale=2, codec="ffv1")
    assert frame_hashes(out) == frame_hashes(ref)


@pytest.mark.skipif(not __import__("torch").cuda.device_count() >= 2, reason="needs 2 CUDA GPUs")
def test_tiny_flashvsr_all_gpus_equal_one_gpu(tmp_path):
    """On a machine with GPUs: --devices all gives the frames of --devices cuda:0 (same cuts)."""
    from tests.engines.flashvsr.tiny import make_tiny_flashvsr

    w = make_tiny_flashvsr(tmp_path / "w")
    clip = make_video(tmp_path / "c.mkv", frames=96, size=(64, 48), audio="aac")
    common = dict(model="flashvsr-v1.1", weights=str(w), codec="ffv1", segment_frames=32)
    vsrkit.upscale(clip, tmp_path / "one.mkv", devices="cuda:0", **common)
    r = vsrkit.upscale(clip, tmp_path / "all.mkv", devices="all", **common)
    assert r.frames == 96
    assert frame_hashes(tmp_path / "one.mkv") == frame_hashes(tmp_path / "all.mkv")


def test_trimmed_range_starts_at_zero_like_an_unbroken_run(tmp_path):
    """--frames A:B: the output starts at 0 and keeps the unbroken run's timestamps, audio cut
    to the same range (H.264 with B-frames: the first segment's packets are shifted back)."""
    clip = make_video(tmp_path / "c.mkv", frames=60, size=(48, 32), audio="aac")
    ref, out = tmp_path / "ref.mkv", tmp_path / "out.mkv"
    vsrkit.upscale(clip, ref, model="lanczos", scale=2, codec="h264", frames="7:52")
    vsrkit.upscale(clip, out, model="lanczos", scale=2, codec="h264", frames="7:52",
                   segment_frames=12, devices="cpu,cpu")
    a, b = frame_hashes(ref), frame_hashes(out)
    assert len(b) == 45 and b[0][1] == 0
    assert [p for _, p in a] == [p for _, p in b]
    assert audio_hashes(out) == audio_hashes(ref)


def test_ctrl_c_while_workers_start(clip, tmp_path):
    """Ctrl-C before the workers have even imported torch: still one line, exit 130, no
    traceback from a worker."""
    out = tmp_path / "o.mkv"
    p = subprocess.Popen([*VSRKIT, "upscale", str(clip), "-o", str(out), "--model", "lanczos",
                          "--devices", "cpu,cpu"], stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(children(p.pid)) < 2 and p.poll() is None:
        time.sleep(0.01)
    workers = children(p.pid)
    assert len(workers) == 2
    os.killpg(p.pid, signal.SIGINT)
    err = p.communicate(timeout=60)[1]
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert gone(workers, within=15)


@pytest.mark.skipif(not __import__("torch").cuda.is_available(), reason="needs CUDA")
def test_10bit_output_from_a_cuda_worker_keeps_its_depth(tmp_path):
    """CUDA outputs are quantized on the GPU to the writer's depth: a segment worker's writer
    must say 16 bits for a 10-bit output, or the frames arrive as 8-bit."""
    clip = make_video(tmp_path / "c.mkv", frames=24, size=(64, 48), codec="libx265",
                      pix_fmt="yuv420p10le")
    ref, out = tmp_path / "ref.mkv", tmp_path / "out.mkv"
    vsrkit.upscale(clip, ref, model="lanczos", scale=2, codec="ffv1", device="cuda:0")
    vsrkit.upscale(clip, out, model="lanczos", scale=2, codec="ffv1", devices="cuda:0",
                   segment_frames=8)

    def frames16(p):
        with av.open(str(p)) as c:
            return [f.to_ndarray(format="rgb48le") for f in c.decode(video=0)]

    a, b = frames16(ref), frames16(out)
    assert len(a) == len(b) == 24
    assert all((x == y).all() for x, y in zip(a, b))
    assert any((x % 257 != 0).any() for x in b)  # not 8-bit values scaled up
