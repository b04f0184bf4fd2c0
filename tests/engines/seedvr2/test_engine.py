"""The SeedVR2 engine on the tiny official-layout weights: N frames in, N out in order for any
length; streaming one frame at a time equals one push; overlapping batches blend; --fit pad keeps
every column; tiled VAE and fp16 safetensors files run; batch arithmetic covers every frame."""

from fractions import Fraction

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from vsrkit.engines import create
from vsrkit.engines.seedvr2 import batches
from vsrkit.engines.seedvr2.windows import window_grid
from vsrkit.frames import StreamSpec
from vsrkit.options import Options

from .common import TINY, need_parity



def run(engine, opts, frames, step):
    sess = engine.open(engine.plan(_spec(frames), opts))
    outs = []
    for i in range(0, frames.shape[0], step):
        outs += list(sess.push(frames[i:i + step]))
    outs += list(sess.flush())
    return torch.cat(outs)


def _spec(frames):
    return StreamSpec(width=frames.shape[2], height=frames.shape[1], frame_rate=Fraction(30),
                      time_base=Fraction(1, 30), frames=None)


@pytest.fixture(scope="module")
def clip():
    g = torch.Generator().manual_seed(0)
    base = torch.rand(1, 3, 6, 7, generator=g)
    x = torch.nn.functional.interpolate(base, size=(24, 37), mode="bilinear")[0]  # smooth
    frames = [(x.roll(i, dims=-1) * 255).to(torch.uint8).permute(1, 2, 0) for i in range(11)]
    return torch.stack(frames)  # (11, 24, 37, 3): odd width


def test_stream_lengths_blend_and_pad(clip):
    need_parity()
    opts = Options(model="seedvr2-3b-tiny", weights=str(TINY), device="cpu", dtype="fp32",
                   seed=3, color_fix="none", batch_frames=5, temporal_overlap=2)
    eng = create(opts)
    plan = eng.plan(_spec(clip), opts)
    assert plan.out_size == (24, 37) and plan.details["canvas"] == (32, 48)
    whole = run(eng, opts, clip, clip.shape[0])
    single = run(eng, opts, clip, 1)
    assert whole.shape == (11, 24, 37, 3)  # every frame, every column (pad, crop back)
    assert torch.equal(whole, single)  # streaming equals one push
    assert whole.min() >= 0 and whole.max() <= 1
    for n in (1, 3, 6):  # an image, a short clip (padded to 5), one batch + a shifted final one
        assert run(eng, opts, clip[:n], 2).shape[0] == n
    tiled = Options(**{**opts.__dict__, "tiled_vae": True, "vae_tile_size": 24, "vae_tile_overlap": 8})
    t_out = run(create(tiled), tiled, clip[:5], 5)  # 2x2 tiles, blended
    assert t_out.shape == (5, 24, 37, 3) and torch.isfinite(t_out).all()
    assert torch.equal(run(eng, opts, clip[:5], 5)[:2], whole[:2])  # frames no later batch touches


def test_fp16_safetensors_loads(clip, tmp_path):
    need_parity()
    from safetensors.torch import save_file
    from vsrkit import hub
    import shutil

    sd = hub.load_state_dict(TINY / "seedvr2_ema_3b.pth")
    save_file({k: v.half().contiguous() for k, v in sd.items()}, tmp_path / "seedvr2_ema_3b_fp16.safetensors")
    for f in ("ema_vae.pth", "pos_emb.pt"):
        shutil.copy(TINY / f, tmp_path / f)
    opts = Options(model="seedvr2-3b-tiny", weights=str(tmp_path), device="cpu", dtype="fp32",
                   seed=3, color_fix="none", scale=2)
    ref = Options(**{**opts.__dict__, "weights": str(TINY)})
    a, b = run(create(opts), opts, clip[:1], 1), run(create(ref), ref, clip[:1], 1)
    assert a.shape == b.shape == (1, 48, 74, 3) and (a - b).abs().max() < 0.05


@given(n=st.integers(1, 200), length=st.sampled_from([5, 9, 21, 33]), overlap=st.integers(0, 8))
def test_batches_cover_every_frame(n, length, overlap):
    overlap = min(overlap, length - 1)
    bs = batches.plan_batches(n, length, overlap)
    covered = set()
    for s, e in bs:
        assert e - s == min(length, n)
        covered |= set(range(s, e))
    assert covered == set(range(n))
    assert batches.pad_4n1(min(n, length)) % 4 == 1


def test_windows_match_the_goldens_readme():
    # README section 6: (2, 20, 24) and (5, 8, 10) token grids
    assert window_grid((2, 20, 24)) == [((0, 1), (0, 19), (0, 22)), ((1, 2), (0, 19), (0, 22)),
                                        ((0, 1), (19, 20), (0, 22)), ((1, 2), (19, 20), (0, 22)),
                                        ((0, 1), (0, 19), (22, 24)), ((1, 2), (0, 19), (22, 24)),
                                        ((0, 1), (19, 20), (22, 24)), ((1, 2), (19, 20), (22, 24))]
    sh = window_grid((2, 20, 24), shifted=True)
    assert sorted({w[1] for w in sh}) == [(0, 9), (9, 20)] and sorted({w[2] for w in sh}) == [(0, 11), (11, 24)]
    assert sorted({w[0] for w in window_grid((5, 8, 10))}) == [(0, 2), (2, 4), (4, 5)]
    assert sorted({w[0] for w in window_grid((5, 8, 10), shifted=True)}) == [(0, 1), (1, 3), (3, 5)]
