import numpy as np
import pytest
import torch
from PIL import Image

from vsrkit.engines.classical import resample_matrix


@pytest.mark.parametrize("kernel", ["lanczos", "bicubic", "nearest"])
@pytest.mark.parametrize("n_in,n_out", [(10, 40), (37, 81), (64, 21), (5, 5)])
def test_rows_sum_to_one(kernel, n_in, n_out):
    m = resample_matrix(n_in, n_out, kernel)
    assert m.shape == (n_out, n_in)
    assert torch.allclose(m.sum(1), torch.ones(n_out, dtype=torch.float64))


def test_constant_image_stays_constant():
    m = resample_matrix(30, 97, "lanczos")
    x = torch.full((30,), 0.4, dtype=torch.float64)
    assert torch.allclose(m @ x, torch.full((97,), 0.4, dtype=torch.float64))


@pytest.mark.parametrize("kernel,pil", [("bicubic", Image.BICUBIC), ("lanczos", Image.LANCZOS)])
@pytest.mark.parametrize("size", [(48, 40), (7, 9), (200, 150)])
def test_matches_pil_on_float_images(kernel, pil, size):
    rng = np.random.default_rng(0)
    img = rng.random((20, 24)).astype(np.float32)
    ref = np.asarray(Image.fromarray(img, mode="F").resize(size, pil))
    mh = resample_matrix(20, size[1], kernel).float()
    mw = resample_matrix(24, size[0], kernel).float()
    out = (mh @ torch.from_numpy(img) @ mw.T).numpy()
    assert np.abs(out - ref).max() < 1e-4
