"""FlashVSR Tiny (v1.1) in vsrkit against FlashVSR+ (lihaoyun6/FlashVSR_plus) on one GPU, with the
same random full-size weights (written once in the official file layout, read by both), the same
frames and the same attention budget settings (sparse_ratio 2, kv_ratio 3, local_range 11, AdaIN
colour fix). Prints FPS and peak GPU memory of each and the ratio vsrkit / FlashVSR+.

    python bench/flashvsr_plus.py --plus DIR [--sizes 768x1408x101,1280x1920x61] [--compile]

DIR is a checkout of FlashVSR_plus, fetched for this benchmark only (it is never part of vsrkit).
Each side runs in a process of its own, so each peak holds one model. FlashVSR+ runs as its
run.py does for a video without tiling: frames padded with copies of the last to 8n+5, upscaled
4x (bicubic) one by one on the GPU, cropped to multiples of 128 and stacked on the host, then
its pipeline, which decodes every latent at the end and returns the whole clip on the GPU. Its
attention is its default (Sparse SageAttention, INT8 Q/K; by the study in
shared/reference/flashvsr.md it attends half the official key budget). vsrkit runs its
engine (its plan and session, from the same files) fed 8 frames at a time, letting each output
go, as `vsrkit upscale` does.

FPS counts the frames a user gets (the input's), over the seconds from the uint8 frames to the
last output frame on the GPU (FlashVSR+: its input preparation included; "pipe" also gives its
pipeline call alone). Each size runs once untimed first (kernels compile for the shapes).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

SPARSE_RATIO, KV_RATIO, LOCAL_RANGE = 2.0, 3.0, 11


def frames_for(h: int, w: int, n: int) -> torch.Tensor:
    """(n, h/4, w/4, 3) uint8: the LQ frames for an h x w output, the same on both sides."""
    g = torch.Generator().manual_seed(1)
    return torch.randint(0, 256, (n, h // 4, w // 4, 3), generator=g, dtype=torch.uint8)


# -- FlashVSR+ ----------------------------------------------------------------------------------

def plus_pipeline(plus: Path, weights: Path, dtype):
    """FlashVSR+'s run.py init_pipeline for mode tiny, version 11, from ``weights``."""
    sys.path.insert(0, str(plus))
    from src import FlashVSRTinyPipeline, ModelManager  # FlashVSR+'s own package
    from src.models import wan_video_dit
    from src.models.TCDecoder import build_tcdecoder
    from src.models.utils import Causal_LQ4x_Proj

    wan_video_dit.USE_BLOCK_ATTN = False  # its default, --attention sage
    dev = "cuda"
    mm = ModelManager(torch_dtype=dtype, device="cpu")
    mm.load_models([str(weights / "diffusion_pytorch_model_streaming_dmd.safetensors")])
    pipe = FlashVSRTinyPipeline.from_model_manager(mm, device=dev)
    pipe.TCDecoder = build_tcdecoder(new_channels=[512, 256, 128, 128], device=dev, dtype=dtype,
                                     new_latent_channels=16 + 768)
    res = pipe.TCDecoder.load_state_dict(torch.load(weights / "TCDecoder.ckpt", map_location=dev),
                                         strict=False)
    if res.missing_keys or res.unexpected_keys:
        raise SystemExit(f"FlashVSR+ TCDecoder keys differ: {res}")
    pipe.TCDecoder.clean_mem()
    lq = Causal_LQ4x_Proj(in_dim=3, out_dim=1536, layer_num=1).to(dev, dtype=dtype)
    lq.load_state_dict(torch.load(weights / "LQ_proj_in.ckpt", map_location="cpu"), strict=True)
    pipe.denoising_model().LQ_proj_in = lq.to(dev)
    pipe.to(dev, dtype=dtype)
    pipe.enable_vram_management(num_persistent_param_in_dit=None)
    pipe.init_cross_kv(prompt_path=str(weights / "posi_prompt.pth"))
    pipe.load_models_to_device(["dit", "vae"])
    return pipe


def plus_input(frames: torch.Tensor, dtype):
    """run.py's prepare_tensors + padding + prepare_input_tensor, for a 4x output."""
    n0 = frames.shape[0]
    vid = frames.to(torch.float32).div(255).to(dtype)
    add = (21 if n0 < 21 else (n0 - 5 + 7) // 8 * 8 + 5) - n0  # next 8n+5
    vid = torch.cat([vid, vid[-1:].repeat(add, 1, 1, 1)])
    n, h0, w0, _ = vid.shape
    th, tw = max(128, h0 * 4 // 128 * 128), max(128, w0 * 4 // 128 * 128)
    f = (n + 4 - 1) // 8 * 8 + 1  # largest 8n+1 <= n + 4
    out = []
    for i in range(f):
        x = vid[min(i, n - 1)].to("cuda").permute(2, 0, 1)[None]
        x = F.interpolate(x, size=(h0 * 4, w0 * 4), mode="bicubic", align_corners=False)
        t, l = (h0 * 4 - th) // 2, (w0 * 4 - tw) // 2
        out.append((x[0, :, t:t + th, l:l + tw] * 2 - 1).to("cpu").to(dtype))
    return torch.stack(out, 0).permute(1, 0, 2, 3)[None], th, tw, f


def plus_run(pipe, frames, dtype):
    t0 = time.perf_counter()
    lq, th, tw, f = plus_input(frames, dtype)
    lq = lq.to("cuda")
    torch.cuda.synchronize()
    t1 = time.perf_counter()
    video = pipe(prompt="", negative_prompt="", cfg_scale=1.0, num_inference_steps=1, seed=0,
                 tiled=False, LQ_video=lq, num_frames=f, height=th, width=tw,
                 is_full_block=False, if_buffer=True,
                 topk_ratio=SPARSE_RATIO * 768 * 1280 / (th * tw), kv_ratio=KV_RATIO,
                 local_range=LOCAL_RANGE, color_fix=True, unload_dit=False,
                 progress_bar_cmd=lambda x: x)
    torch.cuda.synchronize()
    t2 = time.perf_counter()
    got = min(video.shape[1], frames.shape[0])  # run.py keeps the input's frame count
    return got, t2 - t0, t2 - t1, tuple(video.shape)


# -- vsrkit -------------------------------------------------------------------------------------

def vsrkit_engine(weights: Path, compile: bool, device: str = "cuda"):
    """vsrkit's FlashVSR engine on the same files, as `vsrkit upscale --weights` loads them."""
    import vsrkit
    from vsrkit.engines import create

    opts = vsrkit.Options(model="flashvsr-v1.1", weights=str(weights), device=device,
                          dtype="bf16" if device == "cuda" else "fp32", compile=compile)
    return create(opts), opts


def vsrkit_run(model, frames, dtype):
    """The engine's plan and session for these frames, fed 8 at a time as run.py feeds them;
    each output is let go (run.py copies it out)."""
    from fractions import Fraction

    from vsrkit.frames import StreamSpec

    eng, opts = model
    n, lh, lw, _ = frames.shape
    spec = StreamSpec(width=lw, height=lh, frame_rate=Fraction(30), time_base=Fraction(1, 30),
                      frames=None)
    s = eng.open(eng.plan(spec, opts))
    sync = torch.cuda.synchronize if opts.device == "cuda" else (lambda: None)
    got = 0
    sync()
    t0 = time.perf_counter()
    for i in range(0, n, 8):
        got += sum(o.shape[0] for o in s.push(frames[i:i + 8]))
    got += sum(o.shape[0] for o in s.flush())
    sync()
    secs = time.perf_counter() - t0
    s.close()
    return got, secs, secs, (got, lh * 4, lw * 4)


# -- driver -------------------------------------------------------------------------------------

def side(a) -> None:
    """One implementation, every size; one JSON line per size on stdout."""
    dtype = torch.bfloat16
    if a.side == "plus":
        model = plus_pipeline(Path(a.plus), Path(a.weights), dtype)
        go = plus_run
    else:
        model = vsrkit_engine(Path(a.weights), a.side == "vsrkit-compiled")
        go = vsrkit_run
    for spec in a.sizes.split(","):
        h, w, n = map(int, spec.split("x"))
        go(model, frames_for(h, w, 25), dtype)  # warm-up: kernels for this size
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        got, secs, core, shape = go(model, frames_for(h, w, n), dtype)
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(json.dumps({"side": a.side, "size": spec, "frames": got, "seconds": secs,
                          "core_seconds": core, "peak_gib": peak, "shape": shape}), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--plus", required=True, help="a FlashVSR_plus checkout")
    ap.add_argument("--sizes", default="768x1408x101,1280x1920x61", help="HxWxFRAMES of output")
    ap.add_argument("--compile", action="store_true", help="also vsrkit with --compile")
    ap.add_argument("--weights", default=None, help="random weights folder (written if absent)")
    ap.add_argument("--side", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.side:
        return side(a)
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    tmp = None
    if a.weights is None:
        tmp = tempfile.TemporaryDirectory(prefix="vsrkit-plus-")
        a.weights = tmp.name
    w = Path(a.weights)
    if not (w / "TCDecoder.ckpt").exists():
        from multi_gpu import write_random_weights

        t0 = time.perf_counter()
        write_random_weights(w)
        print(f"random full-size weights written in {time.perf_counter() - t0:.0f} s", flush=True)
    rows: dict[tuple[str, str], dict] = {}
    sides = ["plus", "vsrkit"] + (["vsrkit-compiled"] if a.compile else [])
    for s in sides:
        cmd = [sys.executable, __file__, "--side", s, "--plus", a.plus, "--sizes", a.sizes,
               "--weights", str(w)]
        p = subprocess.run(cmd, capture_output=True, text=True)
        for line in p.stdout.splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                rows[(s, r["size"])] = r
                fps = r["frames"] / r["seconds"]
                core = (f", pipeline call alone {r['frames'] / r['core_seconds']:.2f} FPS"
                        if s == "plus" else "")
                print(f"{s:<16} {r['size']:<14} {fps:6.2f} FPS ({r['seconds']:.1f} s{core}), "
                      f"peak {r['peak_gib']:.2f} GiB, out {r['shape']}", flush=True)
        if p.returncode:
            print(f"{s} failed ({p.returncode}):\n{p.stderr[-3000:]}", flush=True)
    print("\nratio vsrkit / FlashVSR+ (FPS, peak memory):")
    for spec in a.sizes.split(","):
        base = rows.get(("plus", spec))
        for s in sides[1:]:
            r = rows.get((s, spec))
            if base and r:
                ratio = (r["frames"] / r["seconds"]) / (base["frames"] / base["seconds"])
                print(f"  {spec:<14} {s:<16} {ratio:.2f}x FPS, "
                      f"{r['peak_gib'] / base['peak_gib']:.2f}x memory")
    if tmp:
        tmp.cleanup()


if __name__ == "__main__":
    main()
