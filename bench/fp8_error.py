"""How far FP8 DiT weights (``--weights-dtype fp8``) move the frames: both engines at full size
with random weights (the bench models), on a small clip the size of the SeedVR2 goldens'
``lq_64x80_17f`` input, run in fp32, bf16 and bf16 + FP8 from the same weights. Prints the
relative error ||y - y_ref|| / ||y_ref|| and the PSNR of bf16 against fp32 (the yardstick: what
bf16 alone costs) and of FP8 against bf16 (what the issue asks), colour fix off.

    python bench/fp8_error.py [--device cpu|cuda] [--only flashvsr|seedvr2]

On CUDA with FP8 matrix units the FP8 linears run ``torch._scaled_mm`` (weights and
activations in e4m3); elsewhere the weights are dequantized (weights-only FP8). About 10
minutes on 2 CPU cores (the DiTs are 1.3 B and 3.4 B parameters).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

H, W, N = 64, 80, 17  # LQ input, as the goldens' lq_64x80_17f


def compare(name: str, outs: dict) -> None:
    def err(a, b):
        a, b = outs[a].double(), outs[b].double()
        rel = ((a - b).norm() / b.norm()).item()
        mse = ((a - b) ** 2).mean().item()
        psnr = 10 * torch.log10(torch.tensor(1.0 / mse)).item() if mse else float("inf")
        return f"relative error {rel:.4f}, PSNR {psnr:.1f} dB"

    print(f"{name}: bf16 vs fp32: {err('bf16', 'fp32')}; fp8 vs bf16: {err('fp8', 'bf16')}; "
          f"fp8 vs fp32: {err('fp8', 'fp32')}", flush=True)


def frames() -> torch.Tensor:
    g = torch.Generator().manual_seed(5)
    # smooth content (a blurred random field), not white noise: closer to a picture
    x = torch.rand(N, 3, H // 8, W // 8, generator=g)
    x = torch.nn.functional.interpolate(x, size=(H, W), mode="bicubic", align_corners=False)
    return (x.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def flashvsr(device: str) -> None:
    from flashvsr_speed import random_models, session

    lq, outs = frames(), {}
    for label, dtype, fp8 in (("fp32", torch.float32, False), ("bf16", torch.bfloat16, False),
                              ("fp8", torch.bfloat16, True)):
        t0 = time.perf_counter()
        loaded = random_models(device, dtype, fp8=fp8)
        s = session(loaded, 4 * H, 4 * W, "reference" if device == "cpu" else "flex", device,
                    dtype)
        s.color_fix = "none"
        outs[label] = torch.cat([*s.push(lq), *s.flush()]).float().cpu()
        s.close()
        del loaded, s
        print(f"  flashvsr {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    compare(f"FlashVSR Tiny {4 * W}x{4 * H} x{N}", outs)


def seedvr2(device: str) -> None:
    from seedvr2_speed import random_init

    from vsrkit.engines.base import EnginePlan
    from vsrkit.engines.seedvr2 import SeedVR2Session
    from vsrkit.engines.seedvr2.config import VAEConfig, dit_3b
    from vsrkit.engines.seedvr2.dit import NaDiT
    from vsrkit.engines.seedvr2.vae import VideoVAE
    from vsrkit.placement import quantize_blocks

    lq, outs = frames(), {}
    oh, ow = 2 * H, 2 * W
    text = torch.randn(58, 5120, generator=torch.Generator().manual_seed(1))
    for label, dtype, fp8 in (("fp32", torch.float32, False), ("bf16", torch.bfloat16, False),
                              ("fp8", torch.bfloat16, True)):
        t0 = time.perf_counter()
        torch.manual_seed(0)  # the same random weights each time (one copy in memory: 14 GB)
        with torch.device(device):
            dit = random_init(NaDiT(dit_3b())).eval().to(dtype)
            vae = random_init(VideoVAE(VAEConfig())).eval().to(dtype)
        if fp8:
            quantize_blocks(dit.blocks, "fp8", dtype)
        txt = dit.embed_text(text.to(device, dtype)).detach()
        details = {"resize": (oh, ow), "fit": "pad", "canvas": (oh, ow), "seed": 0,
                   "batch_frames": N, "temporal_overlap": 0, "color_fix": "none",
                   "attention": "sdpa", "input_noise_scale": 0.0, "latent_noise_scale": 0.0,
                   "vae_tiles": None}
        plan = EnginePlan("seedvr2-3b", (H, W), (oh, ow), device,
                          "fp32" if dtype == torch.float32 else "bf16", details=details)
        s = SeedVR2Session(plan, (dit, vae, txt), torch.device(device), dtype)
        with torch.no_grad():
            outs[label] = torch.cat([*s.push(lq), *s.flush()]).float().cpu()
        s.close()
        del dit, vae, s
        print(f"  seedvr2 {label}: {time.perf_counter() - t0:.0f} s", flush=True)
    compare(f"SeedVR2-3B {ow}x{oh} x{N}", outs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--only", choices=("flashvsr", "seedvr2"))
    a = ap.parse_args()
    print(f"device {a.device}, torch {torch.__version__}", flush=True)
    with torch.no_grad():
        if a.only != "seedvr2":
            flashvsr(a.device)
        if a.only != "flashvsr":
            seedvr2(a.device)


if __name__ == "__main__":
    main()
