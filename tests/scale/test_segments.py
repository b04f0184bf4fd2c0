"""Segmented runs give the same frames as an unbroken run; resume after SIGKILL is exact."""

import hashlib
import random
import signal
import subprocess
import sys
import time

import av
import pytest

import vsrkit
from tests.media import make_video
from vsrkit.scale.segments import work_dir

VSRKIT = [sys.executable, "-m", "vsrkit"]


def frame_hashes(path):
    with av.open(str(path)) as c:
        return [(hashlib.sha256(f.to_ndarray(format="rgb24").tobytes()).hexdigest(), f.pts)
                for f in c.decode(video=0)]


def audio_hashes(path):
    with av.open(str(path)) as c:
        return [hashlib.sha256(bytes(p)).hexdigest() for p in c.demux(c.streams.audio) if p.size]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_video(tmp_path_factory.mktemp("seg") / "clip.mkv", frames=60, size=(48, 32),
                      audio="aac")


@pytest.fixture(scope="module")
def unbroken(clip, tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "ref.mkv"
    vsrkit.upscale(clip, out, model="lanczos", scale=2, codec="ffv1")
    return out


def test_segments_equal_unbroken_run(clip, unbroken, tmp_path):
    out = tmp_path / "seg.mkv"
    r = vsrkit.upscale(clip, out, model="lanczos", scale=2, codec="ffv1", segment_frames=7)
    assert r.frames == 60
    assert frame_hashes(out) == frame_hashes(unbroken)
    assert audio_hashes(out) == audio_hashes(clip)  # untouched streams copied once
    assert not work_dir(out).exists()


def test_devices_equal_unbroken_run(clip, unbroken, tmp_path):
    out = tmp_path / "dev.mkv"
    vsrkit.upscale(clip, out, model="lanczos", scale=2, codec="ffv1", segment_frames=9,
                   devices="cpu,cpu,cpu")
    assert frame_hashes(out) == frame_hashes(unbroken)


def test_changed_option_invalidates_work_folder(clip, tmp_path):
    out = tmp_path / "inv.mkv"
    token = vsrkit.CancelToken()
    seen = []

    def stop_after_first(e):
        if e.message and e.message.startswith("segment 1/"):
            token.cancel("test")

    with pytest.raises(vsrkit.Interrupted):
        vsrkit.upscale(clip, out, model="lanczos", scale=2, codec="ffv1", segment_frames=10,
                       on_event=stop_after_first, cancel=token)
    assert work_dir(out).exists()
    vsrkit.upscale(clip, out, model="lanczos", scale=3, codec="ffv1", segment_frames=10,
                   notice=seen.append)
    assert any("other settings" in n and "--scale" in n for n in seen), seen
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.width == 144


def test_resume_after_sigkill_is_bit_identical(tmp_path):
    rng = random.Random(1234)
    clip = make_video(tmp_path / "long.mkv", frames=240, size=(96, 64), audio="aac")
    ref = tmp_path / "ref.mkv"
    vsrkit.upscale(clip, ref, model="lanczos", scale=2, codec="ffv1")
    out = tmp_path / "resume.mkv"
    cmd = [*VSRKIT, "upscale", str(clip), "-o", str(out), "--model", "lanczos", "--scale", "2",
           "--codec", "ffv1", "--segment-frames", "20", "--quiet"]
    work = work_dir(out)
    kills, done_before = 0, []
    while not out.exists() and kills < 4:
        p = subprocess.Popen(cmd)
        # wait until this run has made a new segment, then kill it at a random moment
        have = len(list(work.glob("seg_*.seg"))) if work.exists() else 0
        deadline = time.monotonic() + 60
        while p.poll() is None and time.monotonic() < deadline and (
                not work.exists() or len(list(work.glob("seg_*.seg"))) <= have):
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        if p.poll() is None:
            p.send_signal(signal.SIGKILL)
            kills += 1
            done_before.append(len(list(work.glob("seg_*.seg"))))
        p.wait()
    assert kills >= 2, "the run finished before it could be killed twice"
    if not out.exists():
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
    assert frame_hashes(out) == frame_hashes(ref)
    assert audio_hashes(out) == audio_hashes(clip)
    assert not work.exists()


def test_flashvsr_segment_seams_are_invisible(tmp_path):
    """A stateful model: segments warm up (48 frames), read the look-ahead and start on the
    model's frame grid, so frames at the seams stay within a few 8-bit levels of the unbroken
    run (PSNR >= 50 dB), and the first segment is identical."""
    import numpy as np

    from tests.engines.flashvsr.tiny import make_tiny_flashvsr

    w = make_tiny_flashvsr(tmp_path / "w")
    clip = make_video(tmp_path / "c.mkv", frames=120, size=(32, 32))
    common = dict(model="flashvsr-v1.1", weights=str(w), device="cpu", codec="ffv1")
    vsrkit.upscale(clip, tmp_path / "one.mkv", **common)
    vsrkit.upscale(clip, tmp_path / "seg.mkv", segment_frames=40, **common)

    def frames(p):
        with av.open(str(p)) as c:
            return [f.to_ndarray(format="rgb24").astype(np.float64) for f in c.decode(video=0)]

    a, b = frames(tmp_path / "one.mkv"), frames(tmp_path / "seg.mkv")
    assert len(a) == len(b) == 120
    assert all(np.array_equal(x, y) for x, y in zip(a[:40], b[:40]))
    mse = [((x - y) ** 2).mean() for x, y in zip(a, b)]
    psnr = [99.0 if m == 0 else 10 * np.log10(255 ** 2 / m) for m in mse]
    assert min(psnr) >= 50, [round(p, 1) for p in psnr]
