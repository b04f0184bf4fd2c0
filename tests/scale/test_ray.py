"""Segments on a real local Ray cluster: same frames as a single-process run, and a worker
killed mid-segment does not stop the job."""

import os
import signal
import threading
import time
from pathlib import Path

import pytest

import vsrkit
from tests.media import make_video
from tests.scale.test_segments import frame_hashes

ray = pytest.importorskip("ray", reason="Ray is an optional extra (pip install vsrkit[ray])")


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                 [str(Path(__file__).resolve().parents[2] / "src"),
                  os.environ.get("PYTHONPATH", "")])}})
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def clip_and_ref(tmp_path_factory):
    d = tmp_path_factory.mktemp("ray")
    clip = make_video(d / "clip.mkv", frames=90, size=(64, 48), audio="aac")
    ref = d / "ref.mkv"
    vsrkit.upscale(clip, ref, model="lanczos", scale=2, codec="ffv1")
    return clip, ref


def _segment_workers() -> list[int]:
    pids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                if b"SegmentWorker.make" in (p / "cmdline").read_bytes():
                    pids.append(int(p.name))
            except OSError:
                pass
    return pids


def test_ray_equals_single_process(cluster, clip_and_ref, tmp_path):
    clip, ref = clip_and_ref
    out = tmp_path / "ray.mkv"
    r = vsrkit.upscale(clip, out, model="lanczos", scale=2, codec="ffv1", segment_frames=15,
                       ray="auto")
    assert r.frames == 90
    assert frame_hashes(out) == frame_hashes(ref)


def test_worker_killed_mid_segment_job_completes(cluster, clip_and_ref, tmp_path):
    clip, ref = clip_and_ref
    out = tmp_path / "killed.mkv"
    killed = []

    def killer():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            pids = _segment_workers()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
            time.sleep(0.01)

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    events = []
    r = vsrkit.upscale(clip, out, model="lanczos", scale=2, codec="ffv1", segment_frames=15,
                       ray="auto", on_event=events.append)
    t.join(timeout=5)
    assert killed, "no Ray worker was seen running a segment"
    assert any(e.message and "retrying" in e.message for e in events)
    assert r.frames == 90
    assert frame_hashes(out) == frame_hashes(ref)
