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


def test_actor_without_the_work_folder_returns_the_bytes(clip_and_ref, tmp_path):
    """An actor on another machine (no shared storage: the folder's token does not match)
    sends the segment's bytes; they equal the file an actor seeing the folder writes there."""
    from vsrkit.options import Options
    from vsrkit.scale.ray_runner import TOKEN, SegmentWorker
    from vsrkit.scale.segments import make_job, seg_name, sha256
    from vsrkit.tiling import Segment

    clip, _ = clip_and_ref
    opts = Options(model="lanczos", scale=2)
    job = make_job(clip, opts, "ffv1", (96, 128), 90, 0)
    worker = SegmentWorker(job)
    (tmp_path / TOKEN).write_text("driver")
    seg = Segment(1, 30, 30, 60)
    data, digest, pts = worker.make(seg, str(tmp_path), "another driver")
    assert data is not None and not (tmp_path / seg_name(1)).exists()
    none, digest2, pts2 = worker.make(seg, str(tmp_path), "driver")
    assert none is None and (tmp_path / seg_name(1)).read_bytes() == data
    assert digest == digest2 == sha256(tmp_path / seg_name(1)) and pts == pts2
    assert len(pts) == 30
