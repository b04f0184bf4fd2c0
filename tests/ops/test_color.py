import pytest
import torch

from vsrkit.errors import UsageError
from vsrkit.ops.color import adain, color_fix, wavelet


def test_adain_takes_reference_statistics():
    g = torch.Generator().manual_seed(0)
    out = torch.rand(2, 3, 16, 16, generator=g) * 0.5
    ref = torch.rand(2, 3, 16, 16, generator=g) * 0.8 - 0.4
    y = adain(out, ref)
    assert torch.allclose(y.mean((-2, -1)), ref.mean((-2, -1)), atol=1e-4)
    assert torch.allclose(y.std((-2, -1), unbiased=False), ref.std((-2, -1), unbiased=False),
                          atol=1e-3)


def test_wavelet_keeps_detail_of_output_and_colors_of_reference():
    flat = torch.full((1, 3, 64, 64), 0.3)
    x = torch.arange(64.0)[None, None, None, :].expand(1, 3, 64, 64)
    detail = 0.2 * torch.sin(x * 3.0)  # high-frequency pattern
    out = (-0.2 + detail).clamp(-1, 1)  # wrong colour, right detail
    y = wavelet(out, flat)
    assert abs(y.mean().item() - 0.3) < 0.02  # the reference's colour
    assert (y - 0.3).abs().mean() > 0.05  # the output's detail survives
    assert color_fix(out, flat, "none") is out


def test_unknown_method_is_a_usage_error():
    with pytest.raises(UsageError):
        color_fix(torch.zeros(1, 3, 4, 4), torch.zeros(1, 3, 4, 4), "sepia")
