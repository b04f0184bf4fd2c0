"""Out-of-memory recovery on a real GPU, both engines, random full-size weights, bf16: torch's
allocator is capped (``torch.cuda.set_per_process_memory_fraction``) below what the plan needs,
so CUDA really runs out, and the run must go on.

* FlashVSR Tiny, 1920x1080, 41 frames: once with the whole GPU (its peak P), then capped at
  P - ``--short`` GiB. The failed block or layer runs again once DiT blocks wait in host memory
  (``memory.OOMGuard``); the lines it says are printed, and the frames are compared with the
  first run's.
* SeedVR2-3B, one 21-frame batch at 1920x1080 with the untiled VAE (> 60 GiB), capped at
  ``--seedvr2-cap`` GiB: the batch is run again with smaller VAE tiles until it fits.

    python bench/oom_recovery.py [--short 1.5] [--seedvr2-cap 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

GIB = 2 ** 30


def cap(gib: float | None) -> None:
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    torch.cuda.set_per_process_memory_fraction(1.0 if gib is None else gib * GIB / total)


def flashvsr(short: float) -> None:
    from flashvsr_speed import random_models, session

    from vsrkit.placement import on_host

    h, w, n = 1080, 1920, 41
    dtype = torch.bfloat16
    loaded = random_models("cuda", dtype)
    g = torch.Generator().manual_seed(1)
    frames = torch.randint(0, 256, (n, h // 4, w // 4, 3), generator=g, dtype=torch.uint8)

    def run(label):
        s = session(loaded, h, w, "flex", "cuda", dtype)
        said: list[str] = []
        s.notice = said.append
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        outs = []
        for i in range(0, n, 8):
            outs += [o.cpu() for o in s.push(frames[i:i + 8])]
        outs += [o.cpu() for o in s.flush()]
        torch.cuda.synchronize()
        secs = time.perf_counter() - t0
        s.close()
        out = torch.cat(outs)
        peak = torch.cuda.max_memory_allocated() / GIB
        print(f"flashvsr {label}: {out.shape[0]} frames in {secs:.1f} s, peak {peak:.2f} GiB, "
              f"{on_host(loaded[0][0])} of 30 DiT blocks on the host; said: {said or 'nothing'}",
              flush=True)
        return out, peak

    ref, peak = run("whole GPU")
    # does moving the blocks to the host give their memory back? (the relief's premise)
    from vsrkit.memory import free_cached_memory
    from vsrkit.placement import offload_more

    dit = loaded[0][0]
    mem = lambda: (torch.cuda.memory_allocated() / GIB, torch.cuda.memory_reserved() / GIB)  # noqa
    before = mem()
    offload_more(dit, dit.blocks, torch.device("cuda"), 30)
    free_cached_memory()
    after = mem()
    offload_more(dit, dit.blocks, torch.device("cuda"), 0)
    free_cached_memory()
    print(f"flashvsr: allocated / reserved {before[0]:.2f} / {before[1]:.2f} GiB, with all 30 "
          f"blocks on the host {after[0]:.2f} / {after[1]:.2f} GiB, back {mem()[0]:.2f} / "
          f"{mem()[1]:.2f} GiB; PYTORCH_CUDA_ALLOC_CONF="
          f"{__import__('os').environ.get('PYTORCH_CUDA_ALLOC_CONF')}", flush=True)
    limit = peak - short
    cap(limit)
    print(f"flashvsr: allocator capped at {limit:.2f} GiB", flush=True)
    try:
        got, _ = run(f"capped at {limit:.2f} GiB")
        d = (got - ref).abs()
        print(f"flashvsr capped vs whole GPU: {'identical' if torch.equal(got, ref) else 'differ'}"
              f" (max |diff| {d.max():.2e}, mean {d.mean():.2e})", flush=True)
    except Exception as e:  # noqa: BLE001 (the bench reports what happened)
        print(f"flashvsr capped run failed: {type(e).__name__}: {str(e)[:300]}", flush=True)
    finally:
        cap(None)
    del loaded


def seedvr2(limit: float) -> None:
    from seedvr2_speed import random_init

    from vsrkit.engines.base import EnginePlan
    from vsrkit.engines.seedvr2 import SeedVR2Session
    from vsrkit.engines.seedvr2.config import VAEConfig, dit_3b
    from vsrkit.engines.seedvr2.dit import NaDiT
    from vsrkit.engines.seedvr2.vae import VideoVAE

    dtype, h, w, n = torch.bfloat16, 1080, 1920, 21
    torch.manual_seed(0)
    with torch.device("cuda"):
        dit = random_init(NaDiT(dit_3b()).to(dtype)).eval()
        vae = random_init(VideoVAE(VAEConfig()).to(dtype)).eval()
        txt = dit.embed_text(torch.randn(58, 5120, dtype=dtype))
    canvas = (-(-h // 16) * 16, -(-w // 16) * 16)
    details = {"resize": (h, w), "fit": "pad", "canvas": canvas, "seed": 0, "batch_frames": n,
               "temporal_overlap": 0, "color_fix": "lab", "attention": "sdpa",
               "input_noise_scale": 0.0, "latent_noise_scale": 0.0, "vae_tiles": None}
    frames = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8)
    plan = EnginePlan("seedvr2-3b", (h, w), (h, w), "cuda", "bf16", details=details)
    s = SeedVR2Session(plan, (dit, vae, txt), torch.device("cuda"), dtype)
    said: list[str] = []
    s.notice = said.append
    cap(limit)
    torch.cuda.reset_peak_memory_stats()
    try:
        t0 = time.perf_counter()
        got = sum(o.shape[0] for o in s.push(frames)) + sum(o.shape[0] for o in s.flush())
        torch.cuda.synchronize()
        print(f"seedvr2-3b untiled VAE capped at {limit:.0f} GiB: {got} of {n} frames in "
              f"{time.perf_counter() - t0:.1f} s, peak {torch.cuda.max_memory_allocated() / GIB:.2f}"
              f" GiB; said: {said or 'nothing'}", flush=True)
    except Exception as e:  # noqa: BLE001
        print(f"seedvr2 capped run failed: {type(e).__name__}: {str(e)[:300]}; said: {said}",
              flush=True)
    finally:
        cap(None)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--short", type=float, default=1.5, help="GiB below FlashVSR's peak")
    ap.add_argument("--seedvr2-cap", type=float, default=40.0, help="GiB for SeedVR2")
    ap.add_argument("--only", choices=("flashvsr", "seedvr2"))
    a = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    if a.only != "seedvr2":
        flashvsr(a.short)
    torch.cuda.empty_cache()
    if a.only != "flashvsr":
        seedvr2(a.seedvr2_cap)


if __name__ == "__main__":
    main()
