"""SeedVR2 sizes (--resolution with --max-resolution, padded to 16 and cropped back) and the
community node's noise options (--input-noise-scale, --latent-noise-scale)."""

from fractions import Fraction

import pytest
import torch

from vsrkit.engines import create
from vsrkit.engines.seedvr2 import condition_time
from vsrkit.engines.seedvr2.config import VAEConfig
from vsrkit.errors import UsageError
from vsrkit.frames import StreamSpec
from vsrkit.options import Options

from .common import TINY, need_parity
from .test_engine import run


def _spec(h, w):
    return StreamSpec(width=w, height=h, frame_rate=Fraction(30), time_base=Fraction(1, 30),
                      frames=None)


def _clip(n=5, h=24, w=37):
    g = torch.Generator().manual_seed(1)
    base = torch.rand(1, 3, 5, 6, generator=g)
    x = torch.nn.functional.interpolate(base, size=(h, w), mode="bilinear")[0]
    return torch.stack([(x.roll(i, -1) * 255).to(torch.uint8).permute(1, 2, 0) for i in range(n)])


def _opts(**kw):
    base = dict(model="seedvr2-3b-tiny", weights=str(TINY), device="cpu", dtype="fp32", seed=5,
                color_fix="none")
    return Options(**{**base, **kw})


def test_resolution_with_cap_pads_and_crops_back():
    need_parity()
    # short side 24 -> 48 (x2: 48x74), then the long side capped at 64: 64 x round(41.5) = 42
    opts = _opts(resolution=48, max_resolution=64)
    eng = create(opts)
    plan = eng.plan(_spec(24, 37), opts)
    assert plan.out_size == (42, 64) and plan.details["canvas"] == (48, 64)
    assert any("padded to 64x48" in n for n in plan.notes)
    out = run(eng, opts, _clip(3), 3)
    assert out.shape == (3, 42, 64, 3)


def test_condition_time_hand_computed():
    # latent (t, h, w, c) = (2, 4, 6, 16) read as (t, h, w) = (4, 6, 16) like the official code:
    # frames 13, pixels 48 x 128; shift = 1 + 4 (79872 - 2424832) / (133632000 - 2424832)
    shift = 1 + 4 * (48 * 128 * 13 - 256 * 256 * 37) / (1280 * 720 * 145 - 256 * 256 * 37)
    want = 1000 * shift * 0.3 / (1 + (shift - 1) * 0.3)
    assert condition_time(0.3, (2, 4, 6, 16), VAEConfig()) == pytest.approx(want, rel=1e-12)
    assert condition_time(0.0, (2, 4, 6, 16), VAEConfig()) == 0.0


@pytest.mark.parametrize("name", ["input_noise_scale", "latent_noise_scale"])
def test_noise_scales(name):
    need_parity()
    clip = _clip(5)
    base = run(create(_opts()), _opts(), clip, 5)
    o = _opts(**{name: 0.5})
    a, b = run(create(o), o, clip, 5), run(create(o), o, clip, 5)
    assert torch.equal(a, b)  # seeded: the same run twice is identical
    d = (a - base).abs()
    assert d.max() > 1e-3  # the noise reaches the output
    o2 = _opts(**{name: 0.5, "seed": 6})
    assert not torch.equal(run(create(o2), o2, clip, 5), a)  # and follows the seed
    bad = _opts(**{name: 1.5})
    with pytest.raises(UsageError, match=name.replace("_", "-")):
        create(bad).plan(_spec(24, 37), bad)
