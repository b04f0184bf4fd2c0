"""Where FlashVSR Tiny's GPU time goes, and what each speed knob buys, in one run.

Random full-size weights (bench/flashvsr_speed.py), bf16, FlexAttention, official attention budget.
For each variant: a warm-up run (compiles kernels for the shapes), then a timed run; per-component
GPU time from CUDA events around the LQ upsample, LQ projector, DiT, TCDecoder and colour fix;
then a torch.profiler kernel table for the last variant.

    python bench/flashvsr_profile.py [--size 768x1408] [--frames 101] [--variants base,cudnn,...]

Variants: flags joined by '+' (each variant is set up on its own): ``bench`` =
torch.backends.cudnn.benchmark (convolutions pick their fastest algorithm), ``cl`` = the TCDecoder
in channels_last, ``compile`` = torch.compile of each DiT block, ``tune`` = FlexAttention compiled with
max-autotune (tries several tile configs per shape); ``base`` = none.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from flashvsr_speed import random_models, session  # noqa: E402

from vsrkit.engines import flashvsr as fv  # noqa: E402


class Timer:
    """GPU time per label from CUDA events (no sync inside the run)."""

    def __init__(self):
        self.pairs = defaultdict(list)

    def wrap(self, label, fn):
        def run(*a, **k):
            s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            s.record()
            out = fn(*a, **k)
            if hasattr(out, "__next__"):  # generators are timed by their caller
                return out
            e.record()
            self.pairs[label].append((s, e))
            return out
        return run

    def report(self, total_s, n):
        torch.cuda.synchronize()
        parts = {k: sum(s.elapsed_time(e) for s, e in v) / 1000 for k, v in self.pairs.items()}
        line = ", ".join(f"{k} {v:.2f} s ({100 * v / total_s:.0f}%)" for k, v in parts.items())
        return f"{line}; rest {total_s - sum(parts.values()):.2f} s"


def timed_run(loaded, h, w, n, timer=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    frames = torch.randint(0, 256, (n, h // 4, w // 4, 3), generator=g, dtype=torch.uint8)
    s = session(loaded, h, w, "flex", "cuda", torch.bfloat16)
    if timer is not None:
        s.lq.push = timer.wrap("lq_proj", s.lq.push)
        s.decoder.decode = timer.wrap("tcdecoder", s.decoder.decode)
        s._color = timer.wrap("color", s._color)
        s._append = timer.wrap("upsample", s._append)
        dit = s.dit
        s.dit = timer.wrap("dit", dit.__call__)
        s.dit.blocks = dit.blocks
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    count = 0
    for i in range(0, n, 8):
        for o in s.push(frames[i:i + 8]):
            count += o.shape[0]
    for o in s.flush():
        count += o.shape[0]
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    assert count == n, count
    for mod, name in ((s.lq, "push"), (s.decoder, "decode")):  # the modules outlive the session
        mod.__dict__.pop(name, None)
    return elapsed


def setup(variant, loaded):
    """``variant``: flags joined by '+': bench (cudnn.benchmark), cl (channels_last decoder),
    compile (torch.compile of each DiT block), tune (FlexAttention autotuned); ``base`` is none."""
    flags = set(variant.split("+"))
    torch.backends.cudnn.benchmark = "bench" in flags
    (dit, lq, tc), *_ = loaded
    tc.to(memory_format=torch.channels_last if "cl" in flags else torch.contiguous_format)
    from vsrkit.ops import attention

    for b in dit.blocks:
        b.__dict__.pop("forward", None)
    from torch.nn.attention.flex_attention import flex_attention

    attention._FLEX = (torch.compile(flex_attention, dynamic=False, mode="max-autotune-no-cudagraphs")
                       if "tune" in flags else None)
    if "compile" in flags:
        # FlexAttention is compiled on its own; inlined into a block's graph inductor picks a
        # config that needs more shared memory than an H100 has
        attention.ATTENTION["flex"] = torch.compiler.disable(attention.sparse_attention_flex)
        for b in dit.blocks:
            b.forward = torch.compile(b.forward, dynamic=False)


def measure(variant, loaded, h, w, n):
    # the timed sessions form reference cycles (the timer's wrappers): collect them, or the
    # previous variant's KV cache counts in this one's peak
    gc.collect()
    torch.cuda.empty_cache()
    setup(variant, loaded)
    t0 = time.perf_counter()
    timed_run(loaded, h, w, 49)  # warm-up: every step shape of a stream
    warm = time.perf_counter() - t0
    torch.cuda.reset_peak_memory_stats()
    secs = timed_run(loaded, h, w, n)
    peak = torch.cuda.max_memory_allocated() / 2**30
    timer = Timer()
    split_s = timed_run(loaded, h, w, n, timer)
    print(f"{variant:18s} {n / secs:6.2f} FPS, peak {peak:.1f} GiB, warm-up {warm:.0f} s"
          f" | split: {timer.report(split_s, n)}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="768x1408", help="HxW output, or several: 768x1408,1280x1920")
    ap.add_argument("--frames", type=int, default=101)
    ap.add_argument("--variants", default="base,bench,bench+cl,bench+compile,bench+cl+compile")
    ap.add_argument("--profile", action="store_true", help="kernel table of the last variant")
    args = ap.parse_args()
    print(torch.cuda.get_device_name(), torch.__version__)
    loaded = random_models("cuda", torch.bfloat16)
    for size in args.size.split(","):
        h, w = map(int, size.split("x"))
        print(f"output {w}x{h}, {args.frames} frames")
        for variant in args.variants.split(","):
            measure(variant, loaded, h, w, args.frames)
    if args.profile:

        from torch.profiler import ProfilerActivity, profile

        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
            timed_run(loaded, h, w, 41)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=70))


if __name__ == "__main__":
    main()
