"""Convolutions the engines share."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def conv3d_as_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     stride=(1, 1, 1), padding=(0, 0, 0)) -> torch.Tensor:
    """``F.conv3d`` with no temporal padding as one 2D conv over the output frames, the kt
    temporal taps stacked on channels: (1, C, T, H, W) -> (1, C', T', H', W'). PyTorch's CPU
    conv3d is several times slower than this; the result is the same up to float summation
    order. Spatial ``padding`` is zero padding, as conv3d's."""
    assert x.ndim == 5 and x.shape[0] == 1 and padding[0] == 0, f"{x.shape=} {padding=}"
    kt, st = weight.shape[2], stride[0]
    xs = x[0].transpose(0, 1)  # (T, C, H, W)
    t_out = (xs.shape[0] - kt) // st + 1
    taps = torch.cat([xs[k:k + st * (t_out - 1) + 1:st] for k in range(kt)], dim=1)  # (T', kt*C, H, W)
    w = weight.transpose(1, 2).reshape(weight.shape[0], -1, *weight.shape[3:])  # (C', kt*C, kh, kw)
    y = F.conv2d(taps, w, bias, stride=tuple(stride[1:]), padding=tuple(padding[1:]))
    return y.transpose(0, 1)[None]
