"""Color correction of model output against the (upsampled) input, shared by the engines.
Frames are (T, 3, H, W) in [-1, 1]; results are clamped to [-1, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import UsageError

METHODS = ("none", "adain", "wavelet")


def adain(out: torch.Tensor, ref: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per frame and channel, out's mean/std replaced by ref's (biased variance + eps), as
    FlashVSR's official 'adain'."""
    mo, vo = out.mean((-2, -1), keepdim=True), out.var((-2, -1), keepdim=True, unbiased=False)
    mr, vr = ref.mean((-2, -1), keepdim=True), ref.var((-2, -1), keepdim=True, unbiased=False)
    return ((out - mo) / torch.sqrt(vo + eps) * torch.sqrt(vr + eps) + mr).clamp(-1, 1)


def _blur(x: torch.Tensor, dilation: int) -> torch.Tensor:
    """[1,2,1]^T[1,2,1]/16 with the given dilation and replicate padding, per channel."""
    k = torch.tensor([1.0, 2.0, 1.0], dtype=x.dtype, device=x.device)
    k = (k[:, None] * k[None, :] / 16).expand(x.shape[1], 1, 3, 3)
    x = F.pad(x, (dilation,) * 4, mode="replicate")
    return F.conv2d(x, k, dilation=dilation, groups=x.shape[1])


def _split(x: torch.Tensor, levels: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low): low after `levels` dilated blurs (dilation 2^i), high the sum of what each
    blur removed."""
    high = torch.zeros_like(x)
    low = x
    for i in range(levels):
        blurred = _blur(low, 2 ** i)
        high = high + (low - blurred)
        low = blurred
    return high, low


def wavelet(out: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    """The output's high frequencies on the reference's low frequencies (5 levels)."""
    high, _ = _split(out.float())
    _, low = _split(ref.float())
    return (high + low).clamp(-1, 1).to(out.dtype)


def color_fix(out: torch.Tensor, ref: torch.Tensor, method: str) -> torch.Tensor:
    if method == "none":
        return out
    if method == "adain":
        return adain(out.float(), ref.float()).to(out.dtype)
    if method == "wavelet":
        return wavelet(out, ref)
    raise UsageError(f"--color-fix {method}: available here: {', '.join(METHODS)}")
