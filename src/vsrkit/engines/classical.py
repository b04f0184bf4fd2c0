"""Classical resampling (lanczos, bicubic, nearest) behind the same streaming interface as the
diffusion engines, so the stream is exercised without a model.

Resampling is separable: per axis a dense ``(out, in)`` weight matrix (PIL's convention: the
kernel is widened by the scale when downscaling, i.e. antialiased), applied as two matmuls.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch

from ..devices import pick_device
from ..plan import output_size
from .base import Engine, EnginePlan, EngineSession


def _lanczos3(x: torch.Tensor) -> torch.Tensor:
    x = x.abs()
    out = torch.sinc(x) * torch.sinc(x / 3)
    return torch.where(x < 3, out, torch.zeros_like(x))


def _bicubic(x: torch.Tensor, a: float = -0.5) -> torch.Tensor:
    x = x.abs()
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return torch.where(x < 1, near, torch.where(x < 2, far, torch.zeros_like(x)))


KERNELS = {"lanczos": (_lanczos3, 3.0), "bicubic": (_bicubic, 2.0)}


def resample_matrix(n_in: int, n_out: int, kernel: str) -> torch.Tensor:
    """``(n_out, n_in)`` float64 weights mapping input samples to output samples, as PIL
    computes them (pixel centres aligned, each row summing to 1)."""
    scale = n_in / n_out
    centers = (torch.arange(n_out, dtype=torch.float64) + 0.5) * scale  # in input pixel units
    if kernel == "nearest":
        idx = torch.clamp(torch.floor(centers).long(), 0, n_in - 1)
        return torch.nn.functional.one_hot(idx, n_in).to(torch.float64)
    fn, support = KERNELS[kernel]
    stretch = max(scale, 1.0)  # widen the kernel when downscaling (antialias)
    radius = support * stretch
    taps = int(math.ceil(radius)) * 2 + 1
    # PIL's window: taps in [int(c - r + 0.5), int(c + r + 0.5)), cut at the edges and the
    # remaining weights renormalized (no edge replication).
    first = torch.floor(centers - radius + 0.5).long()  # (n_out,)
    last = torch.floor(centers + radius + 0.5).long().clamp(max=n_in)
    pos = first[:, None] + torch.arange(taps)[None, :]  # (n_out, taps) input indices
    w = fn((pos + 0.5 - centers[:, None]) / stretch)
    w = torch.where((pos >= 0) & (pos < last[:, None]), w, torch.zeros_like(w))
    w = w / w.sum(dim=1, keepdim=True)
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    m.scatter_add_(1, pos.clamp(0, n_in - 1), w)
    return m


class ClassicalSession(EngineSession):
    def __init__(self, plan: EnginePlan, kernel: str):
        self.device = torch.device(plan.device)
        self.dtype = torch.float32 if plan.dtype == "fp32" else torch.float64
        (h, w), (ho, wo) = plan.in_size, plan.out_size
        self.mh = resample_matrix(h, ho, kernel).to(self.device, torch.float32)  # (Ho, H)
        self.mw = resample_matrix(w, wo, kernel).to(self.device, torch.float32).T  # (W, Wo)

    def push(self, frames: torch.Tensor) -> Iterator[torch.Tensor]:
        assert frames.ndim == 4 and frames.shape[-1] == 3, f"expected (T,H,W,3), {frames.shape=}"
        peak = 65535.0 if frames.dtype == torch.uint16 else 255.0
        x = frames.to(self.device, non_blocking=True).permute(0, 3, 1, 2).float() / peak  # (T,3,H,W)
        y = self.mh @ x @ self.mw  # (T, 3, Ho, Wo)
        yield y.permute(0, 2, 3, 1)

    def flush(self) -> Iterator[torch.Tensor]:
        return iter(())


class ClassicalEngine(Engine):
    native_scale = 2

    def __init__(self, model_id: str, opts, kernel: str):
        self.name = model_id
        self.kernel = kernel

    def plan(self, spec, opts) -> EnginePlan:
        size = output_size(spec.height, spec.width, opts, self.native_scale)
        device = pick_device(opts.device)
        return EnginePlan(self.name, (spec.height, spec.width), (size.out_h, size.out_w),
                          str(device), "fp32", details={"kernel": self.kernel},
                          est_gpu_bytes=None if device.type == "cpu" else
                          4 * 3 * (spec.height * spec.width + size.out_h * size.out_w) * 8)

    def open(self, plan: EnginePlan) -> EngineSession:
        return ClassicalSession(plan, self.kernel)
