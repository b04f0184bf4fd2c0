"""FlashVSR Tiny speed with random full-size weights on a GPU: FPS and peak GPU memory at
768x1408 (101 frames), 1280x1920 (61) and 1080x1920 (101) output, plus a check that the fast
attention path (FlexAttention) matches the exact reference on a small case, in bf16 and
against the fp32 reference. ``--tile-size`` runs each size in spatial DiT tiles (input pixels; a
comma list sweeps them, 0 = untiled), so peak memory can be read against the tile size:

    python bench/flashvsr_speed.py [--sizes 768x1408x101,...] [--check]
    python bench/flashvsr_speed.py --sizes 1080x1920x61 --tile-size 0,512,256,128 [--tile-overlap 24]
        [--tile-state host,device]

``--tile-state``: where each tile's streaming state waits between its steps (host: vsrkit's
choice on CUDA, GPU memory of one tile; device: every tile's state stays on the GPU).

``--variant full`` decodes with the Wan2.1 VAE (random weights at the published size) instead
of the TCDecoder; ``--tiled-vae [TILE,OVERLAP]`` (output px, default 512,64) decodes it in
spatial tiles; ``--unload-dit`` parks the DiT's weights in host memory while the decoder runs.
Untiled runs also print the decoder's share of the time (the VAE is ~60 % of Full's FLOPs):

    python bench/flashvsr_speed.py --variant full [--tiled-vae [512,64]] [--unload-dit]
"""

from __future__ import annotations

import argparse
import time

import torch

from vsrkit.compiled import set_compiled
from vsrkit.engines.base import EnginePlan
from vsrkit.engines.flashvsr import FlashVSRSession, prepare
from vsrkit.engines.flashvsr.dit import DiTConfig, WanDiT
from vsrkit.engines.flashvsr.lq_proj import LQProjector
from vsrkit.engines.flashvsr.tcdecoder import TCDecoder
from vsrkit.engines.flashvsr.tiled import TILE_MULTIPLE, open_tiled
from vsrkit.engines.flashvsr.wan_vae import WanVAE, WanVAEConfig
from vsrkit.engines.tiles import plan_tiles
from vsrkit.options import Options
from vsrkit.placement import quantize_blocks
from vsrkit.tiling import pad_to_multiple

FULL = DiTConfig(dim=1536, in_dim=16, ffn_dim=8960, text_dim=4096, freq_dim=256, num_layers=30,
                 out_dim=16, num_heads=12)


def random_models(device, dtype, cfg=FULL, lq=(2048, 3072), tc=(512, 256, 128, 128),
                  variant="tiny", fp8=False, offload_blocks=0, compile=False):
    """The engine's modules with random weights, placed as the engine places them:
    ``fp8`` (--weights-dtype fp8), ``offload_blocks`` (--offload-blocks N), ``compile``."""
    torch.manual_seed(0)
    with torch.device(device):
        decoder = WanVAE(WanVAEConfig()).drop_encoder() if variant == "full" else TCDecoder(list(tc))
        mods = [WanDiT(cfg), LQProjector(3, lq[0], lq[1], cfg.dim, causal=True), decoder]
    for m in mods:
        for name, p in m.named_parameters():
            if p.ndim > 1:
                torch.nn.init.normal_(p, 0, min(0.02, p[0].numel() ** -0.5))
    if fp8:
        quantize_blocks(mods[0].blocks, "fp8", dtype)
    prompt = torch.randn(1, 512, cfg.text_dim, device=device)
    loaded = prepare(*mods, prompt, torch.device(device), dtype, offload_blocks)
    set_compiled(loaded[0][0].blocks, compile)
    return loaded


def session(loaded, h, w, attention, device, dtype, tile=None, overlap=None, state="host",
            **decoder):
    """``decoder``: plan details ``vae_tiles=(tile, overlap)``, ``unload_dit=True``."""
    ph, pw = pad_to_multiple(h, w, 128)
    plan = EnginePlan("flashvsr-v1.1", (h // 4, w // 4), (h, w), device,
                      {torch.bfloat16: "bf16", torch.float32: "fp32"}[dtype],
                      details={"canvas": (h + ph, w + pw), "sparse_ratio": 2.0, "kv_ratio": 3.0,
                               "local_range": 11, "seed": 0, "color_fix": "adain",
                               "attention": attention, **decoder})
    if tile and plan_tiles(plan, Options(tile_size=tile, tile_overlap=overlap), TILE_MULTIPLE):
        plan.details["tile_state"] = state
        print(f"  tiles: {plan.details['tiles']}")
        return open_tiled(plan, loaded, torch.device(device), dtype, FlashVSRSession)
    return FlashVSRSession(plan, loaded, torch.device(device), dtype)


class DecodeTimer:
    """GPU seconds spent in an untiled session's decoder (CUDA events around each decode)."""

    def __init__(self, s):
        self.events, inner = [], s.decoder.decode

        def timed(latents, lq):
            a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            a.record()
            out = inner(latents, lq)
            b.record()
            self.events.append((a, b))
            return out

        s.decoder.decode = timed

    def seconds(self) -> float:
        torch.cuda.synchronize()
        return sum(a.elapsed_time(b) for a, b in self.events) / 1000


def run(loaded, h, w, n, attention, device, dtype, seed=1, tile=None, overlap=None,
        state="host", timer=None, **decoder):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, h // 4, w // 4, 3), generator=g, dtype=torch.uint8)
    s = session(loaded, h, w, attention, device, dtype, tile, overlap, state, **decoder)
    if timer is not None and hasattr(s, "decoder"):
        timer.append(DecodeTimer(s))
    outs = []
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(0, n, 8):
        outs += [o for o in s.push(frames[i:i + 8])]
    outs += list(s.flush())
    torch.cuda.synchronize()
    secs = time.perf_counter() - t0
    s.close()
    return secs, torch.cat(outs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="768x1408x101,1280x1920x61,1080x1920x101")
    ap.add_argument("--check", action="store_true", help="flex vs reference on a small case")
    ap.add_argument("--tile-size", default="0", help="DiT tile sizes in input pixels, comma "
                    "separated (0: untiled); each --sizes entry runs once per tile size")
    ap.add_argument("--tile-overlap", type=int, default=None,
                    help="tile overlap in input pixels (default: vsrkit's, 24)")
    ap.add_argument("--tile-state", default="host", help="where tiles' state waits between "
                    "steps: host, device, or both (comma separated)")
    ap.add_argument("--variant", choices=("tiny", "full"), default="tiny")
    ap.add_argument("--tiled-vae", nargs="?", const="512,64", default=None, metavar="TILE,OVERLAP",
                    help="full: VAE in spatial tiles (output px; default 512,64)")
    ap.add_argument("--unload-dit", action="store_true",
                    help="DiT weights in host memory while the decoder runs")
    ap.add_argument("--compile", action="store_true", help="each DiT block under torch.compile")
    ap.add_argument("--fp8", action="store_true", help="DiT block linears in FP8 (per channel)")
    ap.add_argument("--offload-blocks", type=int, default=0,
                    help="DiT blocks kept in host memory and streamed in")
    args = ap.parse_args()
    if args.tiled_vae and args.variant != "full":
        ap.error("--tiled-vae needs --variant full")
    device, dtype = "cuda", torch.bfloat16
    print(torch.cuda.get_device_name(), torch.__version__, f"variant {args.variant}")
    decoder = {"unload_dit": args.unload_dit}
    if args.tiled_vae:
        decoder["vae_tiles"] = tuple(int(v) for v in args.tiled_vae.split(","))
        print(f"VAE tiles of {decoder['vae_tiles'][0]} px, overlap {decoder['vae_tiles'][1]} px")
    knobs = dict(fp8=args.fp8, offload_blocks=args.offload_blocks, compile=args.compile)
    print("knobs: " + (", ".join(f"{k}={v}" for k, v in knobs.items() if v) or "none"))
    models = lambda dt: random_models(device, dt, variant=args.variant, **knobs)  # noqa: E731
    loaded = models(dtype)
    if args.check:
        _, ref = run(loaded, 256, 512, 29, "reference", device, dtype)
        _, fast = run(loaded, 256, 512, 29, "flex", device, dtype)
        d = (ref.float() - fast.float()).abs()
        print(f"flex vs reference (256x512, 29 frames, bf16): max abs {d.max():.4f}, "
              f"mean abs {d.mean():.5f} (output in [0,1])")
        # the bf16 fast path against the fp32 exact reference (same seeded random weights)
        del loaded
        _, ref32 = run(models(torch.float32), 256, 512, 29, "reference", device, torch.float32)
        loaded = models(dtype)
        d = (ref32.float() - fast.float()).abs()
        psnr = -10 * torch.log10((d ** 2).mean()).item()
        print(f"bf16 flex vs fp32 reference (256x512, 29 frames): max abs {d.max():.4f}, "
              f"mean abs {d.mean():.5f}, PSNR {psnr:.1f} dB")
    tiles = [int(t) for t in args.tile_size.split(",")]
    for spec in args.sizes.split(","):
        h, w, n = map(int, spec.split("x"))
        runs = [(t, st) for t in tiles for st in (args.tile_state.split(",") if t else [""])]
        for tile, state in runs:
            kw = dict(tile=tile, overlap=args.tile_overlap, state=state, **decoder)
            run(loaded, h, w, 25, "flex", device, dtype, **kw)  # warm-up: every tile shape
            torch.cuda.reset_peak_memory_stats()
            timer: list = []
            secs, out = run(loaded, h, w, n, "flex", device, dtype, timer=timer, **kw)
            assert out.shape == (n, h, w, 3), out.shape
            peak = torch.cuda.max_memory_allocated() / 2**30
            label = f"tile {tile} px, state on {state}" if tile else "untiled"
            dec = f"; decoder {timer[0].seconds():.1f} s" if timer else ""
            print(f"{w}x{h} x{n} {label}: {n / secs:.2f} FPS ({secs:.1f} s{dec}), "
                  f"peak GPU memory {peak:.1f} GiB")


if __name__ == "__main__":
    main()
