"""Arithmetic shared by the engines' estimates: the result type, bytes per dtype, FP8 and
block-swap weight bytes, and the effective compute rates that turn FLOPs into seconds.

Everything here is pure (no tensors, no devices): the planner calls it for many candidate
settings before a single weight is read.

What the peak means: the most bytes torch's caching allocator has handed out at once
(``torch.cuda.max_memory_allocated``). The CUDA context, cuBLAS/cuDNN handles and the
allocator's cached-but-free blocks are not in it (``memory.vram_budget`` keeps a margin for
those).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
FP8_SCALE_BYTES = 4  # one float32 scale per output channel of an FP8 linear (quant.py)

# Effective rates on an H100 SXM (bf16), FLOP/s, one per op class. Calibrated from the
# measurements in docs/performance.md (random full-size weights, torch 2.11, see
# bench/planner.py to measure them again):
# - "dit_sparse": FlashVSR's DiT (linears + block-sparse FlexAttention + the elementwise work
#   around them), fitted with "conv2d" to Tiny at 768x1408 / 1280x1920 / 1152x1920 (29.1, 13.3,
#   14.8 FPS) with the profile's split (convolutions ~27 % of the GPU time at 768x1408).
# - "conv2d": the LQ projector and the TCDecoder (cuDNN, frame by frame).
# - "dit_windows": SeedVR2's DiT (windowed SDPA attention, gathers, fp32 RoPE): 3B, 21
#   frames at 1088x1920 in 1.11 s.
# - "conv3d": SeedVR2's causal 3D-conv VAE: its tiled encode + decode at 1088x1920, 21 frames,
#   10.26 s (encode alone runs ~12 % slower than this rate, decode ~6 % faster).
# - "conv3d_stream": the Wan2.1 decoder of FlashVSR Full, streamed one latent (4 frames) at a
#   time: small time extents and a cache concatenated per conv, 0.64x SeedVR2's rate; fitted
#   to Full at 1408x768 (0.0833 s/frame, of which the DiT and LQ projector as in Tiny).
H100_RATES = {"dit_sparse": 228e12, "conv2d": 276e12, "dit_windows": 236e12, "conv3d": 264e12,
              "conv3d_stream": 169e12}
# Other devices: the H100's rates scaled by dense bf16 peak (TFLOP/s) relative to the H100's
# 989. A rough guide; the memory prediction does not depend on it.
BF16_PEAK = {"H200": 989, "H100": 989, "GH200": 989, "B200": 2250, "A100": 312, "A800": 312,
             "L40S": 362, "L40": 181, "A6000": 155, "4090": 165, "3090": 71, "A10": 125}
CPU_RATE = 0.5e12  # FLOP/s of a many-core CPU in fp32: enough to say "hours"
FP8_SPEEDUP = 1.0  # eager FP8 linears are not faster (docs/performance.md); compiled ~1.17x


@dataclass
class Estimate:
    """A prediction for one plan. ``parts`` names the terms of the peak (bytes)."""

    gpu_bytes: int
    host_bytes: int
    seconds_per_frame: float
    parts: dict[str, int] = field(default_factory=dict)
    phase: str = ""  # which step holds the peak

    def describe(self) -> str:
        gib = 2 ** 30
        terms = ", ".join(f"{k} {v / gib:.2f}" for k, v in self.parts.items())
        return f"peak at {self.phase}: {terms} GiB"


def rates(device_name: str | None) -> dict[str, float]:
    """Rates for a device from its name (``torch.cuda.get_device_name``); ``None`` or ``cpu``
    gives the CPU's."""
    if not device_name or device_name.lower().startswith("cpu"):
        return {k: CPU_RATE for k in H100_RATES}
    for key, peak in BF16_PEAK.items():
        if key.lower() in device_name.lower():
            return {k: v * peak / BF16_PEAK["H100"] for k, v in H100_RATES.items()}
    return dict(H100_RATES)


def linear_params(fan_in: int, fan_out: int, bias: bool = True) -> int:
    return fan_in * fan_out + (fan_out if bias else 0)


def conv_params(cin: int, cout: int, kernel: Sequence[int], bias: bool = True) -> int:
    return cin * cout * math.prod(kernel) + (cout if bias else 0)


@dataclass(frozen=True)
class Weights:
    """Parameter counts of a model, split the way memory is placed: ``linear`` (weights of
    nn.Linear in the swappable blocks, which FP8 quantizes: out rows listed for the scales),
    ``block_other`` (norms, biases, modulation of each block) and ``rest`` (outside the
    blocks: embeddings, heads, VAEs, decoders)."""

    block_linear: tuple[tuple[int, int], ...]  # per block: (weight elements, output rows)
    block_other: tuple[int, ...]  # per block: other parameter elements
    rest: int

    def block_bytes(self, dtype: str, weights_dtype: str | None = None) -> list[int]:
        b = DTYPE_BYTES[dtype]
        if weights_dtype == "fp8":
            return [w + rows * FP8_SCALE_BYTES + o * b
                    for (w, rows), o in zip(self.block_linear, self.block_other)]
        wb = DTYPE_BYTES[weights_dtype] if weights_dtype in DTYPE_BYTES else b
        return [w * wb + o * b for (w, _), o in zip(self.block_linear, self.block_other)]

    def total_params(self) -> int:
        return sum(w for w, _ in self.block_linear) + sum(self.block_other) + self.rest


def swap_gpu_bytes(block_bytes: Sequence[int], n_on_host: int) -> int:
    """GPU bytes of the blocks with the last ``n_on_host`` on the host: the resident blocks
    plus min(n, 2) slots the size of the largest host block (``offload.BlockSwap``)."""
    from ..offload import swap_gpu_bytes as swap

    return swap(block_bytes, n_on_host)


def placed_weights(w: Weights, dtype: str, weights_dtype: str | None, offload_blocks: int
                   ) -> tuple[int, int]:
    """(GPU bytes, pinned host bytes) of a model's weights."""
    blocks = w.block_bytes(dtype, weights_dtype)
    n = max(0, min(offload_blocks, len(blocks)))
    gpu = swap_gpu_bytes(blocks, n) + w.rest * DTYPE_BYTES[dtype]
    host = sum(blocks[len(blocks) - n:]) if n else 0
    return gpu, host


def swap_seconds(block_bytes: Sequence[int], n_on_host: int, compute_s: float,
                 passes: float, link_bytes_per_s: float = 45.5e9) -> float:
    """Extra seconds of ``passes`` forward passes with ``n_on_host`` blocks streamed in: each
    swapped block costs max(copy, its compute) instead of its compute (the copy overlaps the
    previous block; docs/performance.md measured 45.5 GB/s pinned host -> H100)."""
    if n_on_host <= 0 or not block_bytes:
        return 0.0
    per_block = compute_s / len(block_bytes)
    host = block_bytes[len(block_bytes) - n_on_host:]
    return passes * sum(max(0.0, b / link_bytes_per_s - per_block) for b in host)


# -- glue for the engines' plan() ----------------------------------------------------------------

def knobs(details: dict) -> tuple[int, str | None]:
    """(offload blocks, weights dtype) from a plan's details; ``auto`` or absent -> (0, None)
    (the planner resolves ``auto`` before a run)."""
    n = details.get("offload_blocks", 0)
    n = int(n) if isinstance(n, int) or (isinstance(n, str) and n.isdigit()) else 0
    wd = details.get("weights_dtype")
    return n, (wd if wd in DTYPE_BYTES else None)


def device_rates(device: str) -> dict[str, float]:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and torch.cuda.is_available():
        return rates(torch.cuda.get_device_name(dev))
    return rates(None if dev.type == "cpu" else dev.type)


def apply(plan, est: Estimate, host_other: int = 0) -> None:
    """Write an estimate into an ``EnginePlan``. On the CPU the peak is host memory."""
    if plan.device.startswith("cuda"):
        plan.est_gpu_bytes = est.gpu_bytes
        plan.est_host_bytes = est.host_bytes + host_other
    else:
        plan.est_gpu_bytes = None
        plan.est_host_bytes = est.gpu_bytes + est.host_bytes + host_other
    plan.est_seconds_per_frame = est.seconds_per_frame
    plan.details["predicted"] = est.describe()
