"""ops/resize.py against PIL: uint8 bit-exact with Image.resize(BICUBIC), float equal to PIL's
float ('F') images, up and down, odd sizes."""

import numpy as np
import pytest
import torch
from PIL import Image

from vsrkit.ops.resize import resize, resize_u8

SIZES = [((17, 23), (34, 46)), ((17, 23), (40, 31)), ((64, 48), (21, 19)), ((10, 12), (10, 30))]


@pytest.mark.parametrize("src,dst", SIZES)
def test_uint8_bit_exact_with_pil(src, dst):
    g = np.random.default_rng(0)
    frames = g.integers(0, 256, size=(2, *src, 3), dtype=np.uint8)
    want = np.stack([np.array(Image.fromarray(f).resize(dst[::-1], Image.BICUBIC)) for f in frames])
    got = resize_u8(torch.from_numpy(frames), dst).numpy()
    assert got.shape == want.shape and np.array_equal(got, want)


@pytest.mark.parametrize("src,dst", SIZES)
def test_float_matches_pil_float_images(src, dst):
    g = np.random.default_rng(1)
    x = g.random(src, dtype=np.float32)
    want = np.array(Image.fromarray(x, mode="F").resize(dst[::-1], Image.BICUBIC))
    got = resize(torch.from_numpy(x)[None, None], dst)[0, 0].numpy()
    assert np.abs(got - want).max() < 1e-5


def test_float_equals_torch_antialiased_bicubic_when_downscaling():
    x = torch.rand(1, 3, 40, 50)
    ref = torch.nn.functional.interpolate(x, size=(17, 21), mode="bicubic", align_corners=False,
                                          antialias=True)
    assert (resize(x, (17, 21)) - ref).abs().max() < 1e-5
