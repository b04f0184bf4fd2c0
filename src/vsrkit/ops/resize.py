"""PIL-style resampling shared by the engines: bicubic a = -0.5 (and lanczos, nearest), pixel
centres aligned, the kernel widened by the scale when downscaling (antialiased), as
``PIL.Image.resize`` does. Separable: one ``(out, in)`` weight matrix per axis
(``engines.classical.resample_matrix``), applied as two matmuls.

Two modes:

* ``resize``: float frames (any range), float32 math. Equals PIL's float ('F') images and
  torchvision's antialiased bicubic (``F.interpolate(bicubic, antialias=True)``) to ~1e-6, the
  resize of SeedVR2's official preprocessing (even when upsampling).
* ``resize_u8``: bit-exact with ``PIL.Image.resize(BICUBIC)`` on 8-bit RGB images: PIL's integer
  weights (22 fractional bits), the horizontal pass first, each pass rounded and clamped to
  8 bits.
"""

from __future__ import annotations

from functools import lru_cache

import torch

PIL_BITS = 22  # PIL's fixed-point precision for 8-bit resampling (32 - 8 - 2)


def weights(n_in: int, n_out: int, kernel: str = "bicubic") -> torch.Tensor:
    """(n_out, n_in) float64 PIL weights."""
    from ..engines.classical import resample_matrix

    return resample_matrix(n_in, n_out, kernel)


def resize(x: torch.Tensor, size: tuple[int, int], kernel: str = "bicubic") -> torch.Tensor:
    """(..., H, W) float -> (..., H', W') float, same dtype (weights in float32)."""
    h, w = x.shape[-2:]
    oh, ow = size
    y = x.float()
    if (oh, ow) == (h, w):
        return x
    if ow != w:
        y = y @ weights(w, ow, kernel).to(y.device, torch.float32).T  # (..., H, W')
    if oh != h:
        y = weights(h, oh, kernel).to(y.device, torch.float32) @ y  # (..., H', W')
    return y.to(x.dtype)


@lru_cache(maxsize=16)
def _fixed_on(n_in: int, n_out: int, kernel: str, device: str) -> torch.Tensor:
    """``fixed_weights`` on a device, built once per size: an engine resizes every frame to the
    same size, and building the matrix on the host and copying it each call costs more than
    the resize itself."""
    return fixed_weights(n_in, n_out, kernel).to(device)


def fixed_weights(n_in: int, n_out: int, kernel: str = "bicubic") -> torch.Tensor:
    """PIL's integer coefficients (float weights * 2^22 rounded half away from zero), kept in
    float64: every product and sum stays an exact integer (< 2^53)."""
    m = weights(n_in, n_out, kernel)
    return torch.sign(m) * torch.floor(m.abs() * (1 << PIL_BITS) + 0.5)


def resize_u8(frames: torch.Tensor, size: tuple[int, int], kernel: str = "bicubic") -> torch.Tensor:
    """(T, H, W, 3) uint8 -> (T, H', W', 3) uint8, bit-exact with PIL's ``Image.resize``.
    PIL skips the pass of an axis whose size does not change; so does this."""
    assert frames.dtype == torch.uint8 and frames.ndim == 4, f"{frames.dtype=} {frames.shape=}"
    T, h, w, _ = frames.shape
    oh, ow = size
    half, one = float(1 << (PIL_BITS - 1)), float(1 << PIL_BITS)
    x = frames.permute(0, 3, 1, 2).double()  # (T, 3, H, W)
    if ow != w:  # horizontal pass first, as PIL
        x = torch.floor((x @ _fixed_on(w, ow, kernel, str(x.device)).T + half) / one).clamp(0, 255)
    if oh != h:
        x = torch.floor((_fixed_on(h, oh, kernel, str(x.device)) @ x + half) / one).clamp(0, 255)
    return x.to(torch.uint8).permute(0, 2, 3, 1).contiguous()
