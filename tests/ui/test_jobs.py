"""The UI's job queue without a browser: real runs of the classical engine on CPU."""

import time
from pathlib import Path

import av
import pytest

from vsrkit.options import Options
from vsrkit.ui.jobs import JobQueue
from vsrkit.ui.video import browser_playable
from tests.media import make_video

CPU = dict(device="cpu")


def count_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("jobs") / "clip.mp4", frames=12, size=(64, 48))


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    # long and large enough (8x to 512x384) that a stop lands well before the end
    return make_video(tmp_path_factory.mktemp("jobs") / "long.mp4", frames=240, size=(64, 48))


@pytest.fixture
def queue(tmp_path):
    q = JobQueue(tmp_path / "work")
    yield q
    q.close()


def test_a_job_finishes_with_output_preview_playable_and_command(queue, clip):
    job = queue.submit(clip, Options(model="nearest", scale=2.0, **CPU), display_input="clip.mp4",
                       container="mkv")
    assert job.wait(60) and job.status == "done", job.message
    assert job.output.parent == job.out_dir and job.output.suffix == ".mkv"
    assert count_frames(job.output) == 12 and job.frames_done == 12 and job.fraction == 1.0
    live_in, live_out = job.preview
    assert live_in.shape == live_out.shape == (96, 128, 3) and live_in.dtype.name == "uint8"
    # MKV is not for browsers: the page gets an H.264 MP4 of every frame
    assert job.playable != job.output and browser_playable(job.playable)
    assert count_frames(job.playable) == 12
    assert job.command == (f"vsrkit upscale clip.mp4 -o {job.output.name} --model nearest "
                           "--device cpu --scale 2")
    assert job.plan_lines[0].startswith("engine nearest on cpu")


def test_an_mp4_output_is_played_as_it_is(queue, clip):
    job = queue.submit(clip, Options(model="nearest", **CPU))  # MP4 in, MP4 out
    assert job.wait(60) and job.status == "done", job.message
    assert job.output.suffix == ".mp4" and job.playable == job.output


def test_errors_are_one_line_messages(queue, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video at all" * 100)
    job = queue.submit(bad, Options(model="nearest", **CPU))
    assert job.wait(60) and job.status == "failed"
    assert job.message and "Traceback" not in job.message and "\n" not in job.message
    assert job.output is None


def test_stop_keeps_a_partial_file_and_jobs_run_one_at_a_time(queue, long_clip, clip):
    opts = Options(model="lanczos", scale=8.0, **CPU)
    a = queue.submit(long_clip, opts)
    b = queue.submit(clip, opts)
    deadline = time.monotonic() + 60
    while a.frames_done < 8 and not a.is_finished and time.monotonic() < deadline:
        time.sleep(0.002)
    assert b.status == "queued"  # one job at a time on the CPU
    assert queue.stop(a.id)
    assert a.wait(60) and a.status == "stopped", a.message
    assert ".partial" in a.output.name and 8 <= a.frames_done < 240
    assert count_frames(a.output) == a.frames_done
    assert a.playable is not None and count_frames(a.playable) == a.frames_done
    assert b.wait(60) and b.status == "done" and b.started >= a.finished
    assert not queue.stop(a.id)  # nothing left to stop


def test_a_queued_job_can_be_dropped(queue, long_clip, clip):
    opts = Options(model="nearest", **CPU)
    a = queue.submit(long_clip, opts)
    b = queue.submit(clip, opts)
    assert queue.stop(b.id)
    assert b.wait(60) and b.status == "cancelled" and b.started is None
    assert a.wait(60) and a.status == "done"
    assert [j.id for j in queue.jobs()] == [a.id, b.id]
