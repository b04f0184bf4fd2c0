"""SeedVR2 over time: a segmented run (resume, --devices) reproduces the unbroken run frame for
frame (the plan's warm-up, look-ahead and batch-grid alignment), and every output frame is its
own input frame's restoration: no 4n+1 padding frame and no warm-up frame reaches the output."""

import hashlib

import av
import pytest
import torch

import vsrkit
from tests.media import make_video
from vsrkit.engines import create
from vsrkit.options import Options

from .common import TINY, need_parity
from .test_engine import _spec, run

COMMON = dict(model="seedvr2-3b-tiny", weights=str(TINY), device="cpu", dtype="fp32", seed=3,
              color_fix="none", batch_frames=5, temporal_overlap=2, codec="ffv1")


def frame_hashes(path):
    with av.open(str(path)) as c:
        return [(hashlib.sha256(f.to_ndarray(format="rgb24").tobytes()).hexdigest(), f.pts)
                for f in c.decode(video=0)]


def test_segments_and_devices_equal_unbroken_run(tmp_path):
    need_parity()
    clip = make_video(tmp_path / "c.mkv", frames=23, size=(32, 24))
    one = vsrkit.upscale(clip, tmp_path / "one.mkv", **COMMON)
    assert one.frames == 23
    plan = one.plan
    assert (plan.warmup_frames, plan.lookahead_frames, plan.frame_align) == (5, 5, 3)
    want = frame_hashes(tmp_path / "one.mkv")
    assert len(want) == 23 and len({h for h, _ in want}) == 23  # frames differ: a real check
    vsrkit.upscale(clip, tmp_path / "seg.mkv", segment_frames=7, **COMMON)
    assert frame_hashes(tmp_path / "seg.mkv") == want
    vsrkit.upscale(clip, tmp_path / "dev.mkv", segment_frames=8, devices="cpu,cpu", **COMMON)
    assert frame_hashes(tmp_path / "dev.mkv") == want


@pytest.mark.parametrize("n", [1, 3, 6, 8])
def test_each_output_is_its_own_frame(n):
    """Frames of distinct flat levels in no order; the wavelet colour fix carries each input
    frame's low frequencies into its output (through an affine map on this tiny random model),
    so an output that came from a padding copy of the last frame, or from a neighbour, breaks
    the fit of output levels to input levels."""
    need_parity()
    levels = torch.tensor([120.0, 40, 200, 70, 170, 230, 95, 145])[:n]  # >= 25 apart
    g = torch.Generator().manual_seed(0)
    tex = torch.rand(16, 16, 3, generator=g) * 6
    frames = torch.stack([(lv + tex).clamp(0, 255).to(torch.uint8) for lv in levels])
    opts = Options(**{**{k: v for k, v in COMMON.items() if k != "codec"}, "color_fix": "wavelet"})
    eng = create(opts)
    out = run(eng, opts, frames, 2)  # pushed two at a time; batches of 5, overlap 2
    assert out.shape == (n, 16, 16, 3)
    got = out.double().mean(dim=(1, 2, 3)) * 255
    want = frames.double().mean(dim=(1, 2, 3))
    if n > 1:
        A = torch.stack([want, torch.ones_like(want)], 1)
        a, b = torch.linalg.lstsq(A, got[:, None]).solution[:, 0]
        resid = got - (a * want + b)
        assert a > 0.5 and resid.abs().max() < 8, (a, b, resid)  # a wrong frame: >= 20 off
    assert eng.plan(_spec(frames), opts).latency_frames == 5
