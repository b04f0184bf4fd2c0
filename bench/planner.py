"""The planner's predictions against the GPU: for the benchmark shapes, run the real engine
sessions on random full-size weights (made in memory, nothing downloaded), measure the peak
(torch.cuda.max_memory_allocated from the session's start, weights included, outputs let go as
run.py does) and seconds per frame, and print them beside the estimate's prediction with the
error; the last line gives the largest errors. Per-phase peaks (DiT, decoder / VAE encode, DiT,
decode) show which term to recalibrate (src/vsrkit/estimate/*.py).

    python bench/planner.py [--only flashvsr|seedvr2] [--no-full]

One command, about 4-6 minutes on an H100 (warm-up runs compile FlexAttention per shape).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

from vsrkit.engines.base import EnginePlan  # noqa: E402
from vsrkit.estimate import flashvsr as ef  # noqa: E402
from vsrkit.estimate import seedvr2 as es  # noqa: E402
from vsrkit.estimate.common import device_rates  # noqa: E402
from vsrkit.tiling import pad_to_multiple  # noqa: E402

GIB = 2 ** 30
ROWS: list[str] = []
ERRORS: list[tuple[float, float]] = []  # (peak error, time error) in % per row


def report(name, pred, meas_bytes, pred_s, meas_s, phases, pred_phase):
    e = 100 * (pred.gpu_bytes / meas_bytes - 1)
    et = 100 * (pred_s / meas_s - 1)
    row = (f"{name:<34} peak pred {pred.gpu_bytes / GIB:6.2f} GiB meas {meas_bytes / GIB:6.2f} GiB "
           f"err {e:+5.1f}% | s/frame pred {pred_s:.4f} meas {meas_s:.4f} err {et:+5.1f}% | "
           f"pred peak at {pred_phase}; measured phases: "
           + ", ".join(f"{k} {v / GIB:.2f}" for k, v in phases.items()))
    ROWS.append(row)
    ERRORS.append((e, et))
    print(row, flush=True)


class PhasePeaks:
    """Peak allocated bytes while each wrapped method runs. The counter is reset at each call;
    ``total()`` is the run's peak: every phase's, and the counter's between phases. ``unwrap()``
    after each run: the models are shared by the sessions of every size, and a wrapper left on
    them resets the counter inside the next size's wrapper, which then records the bytes left
    after the phase instead of its peak (the first size's rows alone were right)."""

    def __init__(self):
        self.peaks: dict[str, int] = {}
        self.between = 0
        self.wrapped: list[tuple[object, str]] = []

    def wrap(self, obj, method: str, label: str) -> None:
        f = getattr(obj, method)

        def run(*a, **k):
            self.between = max(self.between, torch.cuda.max_memory_allocated())
            torch.cuda.reset_peak_memory_stats()
            try:
                return f(*a, **k)
            finally:
                self.peaks[label] = max(self.peaks.get(label, 0), torch.cuda.max_memory_allocated())
                torch.cuda.reset_peak_memory_stats()

        setattr(obj, method, run)
        self.wrapped.append((obj, method))

    def unwrap(self) -> None:
        for obj, method in self.wrapped:
            vars(obj).pop(method, None)
        self.wrapped.clear()

    def total(self) -> int:
        return max(self.between, torch.cuda.max_memory_allocated(), *self.peaks.values())


# -- FlashVSR -----------------------------------------------------------------------------------

def flashvsr(sizes, full: bool, device, dtype):
    from flashvsr_speed import random_models

    from vsrkit.engines.flashvsr import FlashVSRSession, prepare
    from vsrkit.engines.flashvsr.wan_vae import WanVAE, WanVAEConfig

    loaded = random_models(device, dtype)
    shapes = ef.FlashVSRShapes(dim=1536, ffn_dim=8960, num_layers=30)
    variants = [("tiny", loaded, shapes, sizes)]
    if full:
        with torch.device(device):
            vae = WanVAE(WanVAEConfig()).drop_encoder()
        n_vae = sum(p.numel() for p in vae.parameters())
        (dit, lq, _), *_ = loaded
        full_loaded = prepare(dit, lq, vae, torch.randn(1, 512, 4096, device=device),
                              torch.device(device), dtype)
        variants.append(("full", full_loaded, ef.FlashVSRShapes(dim=1536, ffn_dim=8960,
                         num_layers=30, tc=None, vae_params=n_vae), sizes[:1]))
    for variant, mods, shp, szs in variants:
        for h, w, n in szs:
            ph, pw = pad_to_multiple(h, w, 128)
            details = {"variant": variant, "canvas": (h + ph, w + pw), "sparse_ratio": 2.0,
                       "kv_ratio": 3.0, "local_range": 11, "seed": 0, "color_fix": "adain",
                       "attention": "flex", "vae_tiles": None, "unload_dit": False}

            def session():
                plan = EnginePlan("flashvsr-v1.1", (h // 4, w // 4), (h, w), "cuda", "bf16",
                                  details=dict(details))
                return FlashVSRSession(plan, mods, torch.device(device), dtype)

            frames = torch.randint(0, 256, (n, h // 4, w // 4, 3), dtype=torch.uint8)

            def run(s, k):
                # pushes 4 frames at a time and lets each output go, as run.py does (it
                # quantizes them on the GPU and copies them to pinned host memory): holding
                # every float32 output on the GPU would add up to 12 B per output pixel and
                # frame to the peak (1.1 GiB at 1408x768 x101) that a user's run never has
                got = 0
                for i in range(0, k, 4):
                    got += sum(o.shape[0] for o in s.push(frames[i:i + 4]))
                return got + sum(o.shape[0] for o in s.flush())

            run(session(), 25)  # warm-up: kernels for this shape
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            s = session()
            pp = PhasePeaks()
            pp.wrap(s.dit, "forward", "DiT")
            pp.wrap(s.decoder, "decode", "decoder")
            torch.cuda.reset_peak_memory_stats()
            t0 = time.perf_counter()
            got = run(s, n)  # pushes 4 frames at a time, as run.py does
            torch.cuda.synchronize()
            secs = (time.perf_counter() - t0) / n
            peak = pp.total()
            pp.unwrap()
            assert got == n
            pred = ef.estimate(shp, details["canvas"], variant=variant, rates=device_rates("cuda"))
            report(f"flashvsr {variant} {w}x{h} x{n}", pred, peak, pred.seconds_per_frame, secs,
                   pp.peaks, pred.phase)
            del s
            torch.cuda.empty_cache()


# -- SeedVR2 ------------------------------------------------------------------------------------

def seedvr2(h, w, n, device, dtype):
    from seedvr2_speed import random_init

    from vsrkit.engines.seedvr2 import SeedVR2Session
    from vsrkit.engines.seedvr2.config import VAEConfig, dit_3b
    from vsrkit.engines.seedvr2.dit import NaDiT
    from vsrkit.engines.seedvr2.vae import VideoVAE

    cfg, vcfg = dit_3b(), VAEConfig()
    torch.manual_seed(0)
    with torch.device(device):
        dit = random_init(NaDiT(cfg).to(dtype)).eval()
        vae = random_init(VideoVAE(vcfg).to(dtype)).eval()
        txt = dit.embed_text(torch.randn(58, 5120, dtype=dtype))
    canvas = (-(-h // 16) * 16, -(-w // 16) * 16)
    details = {"resize": (h, w), "fit": "pad", "canvas": canvas, "seed": 0, "batch_frames": n,
               "temporal_overlap": 0, "color_fix": "lab", "attention": "sdpa",
               "input_noise_scale": 0.0, "latent_noise_scale": 0.0, "vae_tiles": (512, 64)}
    frames = torch.randint(0, 256, (n, h, w, 3), dtype=torch.uint8)
    for rep in range(2):  # the first warms up the kernels
        plan = EnginePlan("seedvr2-3b", (h, w), (h, w), "cuda", "bf16", details=dict(details))
        s = SeedVR2Session(plan, (dit, vae, txt), torch.device(device), dtype)
        pp = PhasePeaks()
        pp.wrap(vae, "encode_moments", "encode")
        pp.wrap(dit, "forward", "DiT")
        pp.wrap(vae, "decode", "decode")
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        got = sum(o.shape[0] for o in s.push(frames)) + sum(o.shape[0] for o in s.flush())
        torch.cuda.synchronize()
        secs = (time.perf_counter() - t0) / n
        peak = pp.total()
        pp.unwrap()
        assert got == n
    pred = es.estimate(es.SeedVR2Shapes(cfg, vcfg), canvas, (h, w), batch_frames=n,
                       temporal_overlap=0, vae_tiles=(512, 64), rates=device_rates("cuda"))
    report(f"seedvr2-3b {w}x{h} x{n} tiled VAE", pred, peak, pred.seconds_per_frame, secs,
           pp.peaks, pred.phase)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", choices=("flashvsr", "seedvr2"))
    ap.add_argument("--no-full", action="store_true", help="skip FlashVSR Full (Wan VAE decoder)")
    a = ap.parse_args()
    device, dtype = "cuda", torch.bfloat16
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    t0 = time.time()
    if a.only != "seedvr2":
        flashvsr([(768, 1408, 101), (1280, 1920, 61), (1080, 1920, 101)], not a.no_full,
                 device, dtype)
        torch.cuda.empty_cache()
    if a.only != "flashvsr":
        seedvr2(1080, 1920, 21, device, dtype)
    print(f"\nsummary ({time.time() - t0:.0f} s):")
    print("\n".join(ROWS))
    print(summary_line(ERRORS))


def summary_line(errors) -> str:
    """One line to re-check the calibration by (the planner's target: both within 15 %)."""
    if not errors:
        return "max |peak err| - %, max |time err| - % (no rows)"
    return (f"max |peak err| {max(abs(p) for p, _ in errors):.1f} %, "
            f"max |time err| {max(abs(t) for _, t in errors):.1f} %")


if __name__ == "__main__":
    main()
