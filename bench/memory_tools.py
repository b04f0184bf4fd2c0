"""Memory tools on a synthetic Wan2.1-1.3B-sized DiT stack (FlashVSR's DiT shape): 30 blocks of
q, k, v, o (1536x1536), SDPA self-attention (12 heads of 128) and a GELU FFN 1536 -> 8960 ->
1536, pre-norm residuals, at 4224 tokens, random weights (nn.Linear's default init).

Measures, on one GPU:
  1. single linears at M = 4224: bf16 F.linear vs FP8 _scaled_mm (the matmul alone, and the
     whole FP8Linear with its dynamic activation quantization), per-channel and per-tensor;
  2. the 30-block stack: bf16 vs FP8 (per-channel weights + per-token activations, per-tensor,
     and the dequant fallback), time and relative error against an fp32 reference, then the
     same with each block's forward under torch.compile (if time allows);
  3. block swap with N = 0, 10, 20, 30 blocks on the host: time per pass, slowdown against
     N = 0, weights resident on the GPU and peak memory; plus the pinned host-to-device copy
     rate that bounds it. Also FP8 + N = 30.

    python bench/memory_tools.py [--out results.json] [--time-budget 200]
    python bench/memory_tools.py --device cpu --blocks 3 --tokens 64 --dim 128 --ffn 256 \
        --heads 2   # a smoke run of the script itself

Prints a table and writes JSON (to --out, default $OUT/memory_tools.json when $OUT is set).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from vsrkit.offload import BlockSwap  # noqa: E402
from vsrkit.quant import FP8Linear, quantize_activation, quantize_linears, quantize_weight  # noqa: E402


class Block(nn.Module):
    def __init__(self, dim, ffn, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.q, self.k, self.v, self.o = (nn.Linear(dim, dim) for _ in range(4))
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(approximate="tanh"),
                                 nn.Linear(ffn, dim))

    def forward(self, x):  # (B, L, D)
        b, n, d = x.shape
        # 1. Self-attention
        h = self.norm1(x)
        q, k, v = (p(h).view(b, n, self.heads, -1).transpose(1, 2) for p in (self.q, self.k, self.v))
        a = F.scaled_dot_product_attention(q, k, v)  # (B, heads, L, D/heads)
        x = x + self.o(a.transpose(1, 2).reshape(b, n, d))
        # 2. Feed-forward
        return x + self.ffn(self.norm2(x))


def run_stack(blocks, x):
    for blk in blocks:
        x = blk(x)
    return x


def rel(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def timeit(fn, dev, warmup=2, iters=5) -> float:
    """Milliseconds per call."""
    for _ in range(warmup):
        fn()
    sync(dev)
    if dev.type == "cuda":
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        for _ in range(iters):
            fn()
        e.record()
        sync(dev)
        return s.elapsed_time(e) / iters
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) * 1000 / iters


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--blocks", type=int, default=30)
    ap.add_argument("--dim", type=int, default=1536)
    ap.add_argument("--ffn", type=int, default=8960)
    ap.add_argument("--heads", type=int, default=12)
    ap.add_argument("--tokens", type=int, default=4224)
    ap.add_argument("--swap", default="0,10,20,30")
    ap.add_argument("--time-budget", type=float, default=200.0,
                    help="seconds; optional parts (compile) are skipped past it")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    t0 = time.time()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    dt = torch.bfloat16
    backend = "auto" if cuda else "scaled_mm"  # CPU smoke runs exercise the scaled_mm code path
    out_path = args.out or (os.path.join(os.environ["OUT"], "memory_tools.json")
                            if os.environ.get("OUT") else None)
    res: dict = {"config": vars(args), "torch": torch.__version__}
    if cuda:
        res["gpu"] = torch.cuda.get_device_name(dev)
        res["capability"] = list(torch.cuda.get_device_capability(dev))
    torch.backends.cuda.matmul.allow_tf32 = False

    def save():
        if out_path:
            Path(out_path).write_text(json.dumps(res, indent=1))

    def log(msg):
        print(f"[{time.time() - t0:6.1f}s] {msg}", flush=True)

    M, D, Fd = args.tokens, args.dim, args.ffn
    torch.manual_seed(0)

    # -- 1. single linears ---------------------------------------------------------------------
    lin_rows = []
    with torch.no_grad():
        for k, n in ((D, D), (D, Fd), (Fd, D)):
            lin = nn.Linear(k, n).to(dev)
            x = torch.randn(M, k, device=dev, dtype=dt)
            w = lin.weight.to(dt)
            b = lin.bias.to(dt)
            ref = F.linear(x.float(), lin.weight, lin.bias)
            row = {"shape": f"{M}x{k} @ {k}x{n}",
                   "bf16_ms": timeit(lambda: F.linear(x, w, b), dev, 3, 20)}
            flops = 2 * M * k * n
            row["bf16_tflops"] = flops / row["bf16_ms"] / 1e9
            row["bf16_rel_err"] = rel(F.linear(x, w, b), ref)
            for scheme in ("per_channel", "per_tensor"):
                q = FP8Linear.from_linear(lin, scheme=scheme, backend=backend).to(dev)
                xq, xs = quantize_activation(x, q.act_scale)
                ws = q.weight_scale.reshape(1, -1) if scheme == "per_channel" else q.weight_scale
                mm = lambda: torch._scaled_mm(xq, q.weight.t(), scale_a=xs, scale_b=ws,  # noqa: E731
                                              bias=b, out_dtype=dt, use_fast_accum=True)
                tag = "rowwise" if scheme == "per_channel" else "tensorwise"
                row[f"fp8_{tag}_mm_ms"] = timeit(mm, dev, 3, 20)
                row[f"fp8_{tag}_layer_ms"] = timeit(lambda: q(x), dev, 3, 20)
                row[f"fp8_{tag}_rel_err"] = rel(q(x), ref)
            lin_rows.append(row)
            log(f"linear {row['shape']}: bf16 {row['bf16_ms']:.3f} ms "
                f"({row['bf16_tflops']:.0f} TFLOP/s), fp8 rowwise mm {row['fp8_rowwise_mm_ms']:.3f} "
                f"/ layer {row['fp8_rowwise_layer_ms']:.3f} ms, tensorwise mm "
                f"{row['fp8_tensorwise_mm_ms']:.3f} / layer {row['fp8_tensorwise_layer_ms']:.3f} ms")
        # odd M: _scaled_mm must accept any token count
        try:
            q = FP8Linear.from_linear(nn.Linear(D, D), backend=backend).to(dev)
            q(torch.randn(M + 1, D, device=dev, dtype=dt))
            res["odd_M_ok"] = True
        except Exception as e:  # report, do not stop the bench
            res["odd_M_ok"] = f"{type(e).__name__}: {e}"[:300]
    res["linears"] = lin_rows
    save()

    # -- 2. the stack ---------------------------------------------------------------------------
    master = nn.ModuleList(Block(D, Fd, args.heads) for _ in range(args.blocks)).eval()
    for p in master.parameters():
        p.requires_grad_(False)
    master16 = copy.deepcopy(master).to(dt)  # host copy the block-swap runs start from
    x = torch.randn(1, M, D, device=dev, dtype=dt)
    stack = {}
    with torch.no_grad():
        blocks32 = copy.deepcopy(master).to(dev)
        y32 = run_stack(blocks32, x.float())
        del blocks32
        blocks16 = copy.deepcopy(master16).to(dev)
        y16 = run_stack(blocks16, x)
        stack["bf16"] = {"ms": timeit(lambda: run_stack(blocks16, x), dev),
                         "rel_err_vs_fp32": rel(y16, y32)}
        log(f"stack bf16: {stack['bf16']['ms']:.2f} ms, rel err {stack['bf16']['rel_err_vs_fp32']:.4f}")
        variants = {"fp8_per_channel": dict(scheme="per_channel", backend=backend),
                    "fp8_per_tensor": dict(scheme="per_tensor", backend=backend),
                    "fp8_dequant": dict(scheme="per_channel", backend="dequant")}
        fp8_blocks = {}
        for name, kw in variants.items():
            blocks = copy.deepcopy(blocks16)
            rep = quantize_linears(blocks, **kw)
            y = run_stack(blocks, x)
            stack[name] = {"ms": timeit(lambda: run_stack(blocks, x), dev),
                           "rel_err_vs_fp32": rel(y, y32), "rel_err_vs_bf16": rel(y, y16),
                           "weights_mib": rep.bytes_after / 2**20,
                           "bf16_weights_mib": rep.bytes_before / 2**20}
            stack[name]["speedup_vs_bf16"] = stack["bf16"]["ms"] / stack[name]["ms"]
            log(f"stack {name}: {stack[name]['ms']:.2f} ms (x{stack[name]['speedup_vs_bf16']:.2f}), "
                f"rel err vs fp32 {stack[name]['rel_err_vs_fp32']:.4f}, vs bf16 "
                f"{stack[name]['rel_err_vs_bf16']:.4f}")
            fp8_blocks[name] = blocks
            if name == "fp8_per_channel":
                y8 = y
        res["stack"] = stack
        save()

        # compiled: each block's forward (the hot function), as engines will do
        if cuda and time.time() - t0 < args.time_budget * 0.45:
            # 30 block instances share one compiled graph; allow recompiles for safety.
            for knob in ("cache_size_limit", "recompile_limit", "accumulated_cache_size_limit",
                         "accumulated_recompile_limit"):
                if hasattr(torch._dynamo.config, knob):
                    setattr(torch._dynamo.config, knob, 256)
            comp = {}
            for name, blocks in (("bf16", blocks16), ("fp8_per_channel", fp8_blocks["fp8_per_channel"]),
                                 ("fp8_per_tensor", fp8_blocks["fp8_per_tensor"])):
                if time.time() - t0 > args.time_budget * 0.6:
                    comp[name] = "skipped (time budget)"
                    continue
                cblocks = [torch.compile(blk) for blk in blocks]
                tc = time.time()
                y = run_stack(cblocks, x)
                sync(dev)
                comp[name] = {"compile_s": time.time() - tc,
                              "ms": timeit(lambda: run_stack(cblocks, x), dev),
                              "rel_err_vs_fp32": rel(y, y32)}
                log(f"compiled {name}: {comp[name]['ms']:.2f} ms (compile {comp[name]['compile_s']:.0f} s)")
            if isinstance(comp.get("bf16"), dict):
                for name in ("fp8_per_channel", "fp8_per_tensor"):
                    if isinstance(comp.get(name), dict):
                        comp[name]["speedup_vs_bf16_compiled"] = comp["bf16"]["ms"] / comp[name]["ms"]
            res["stack_compiled"] = comp
            save()
        del blocks16, fp8_blocks
        if cuda:
            torch.cuda.empty_cache()

    # -- 3. block swap ----------------------------------------------------------------------------
    if cuda:
        nbytes = sum(p.numel() * 2 for p in master[0].parameters())
        host = torch.empty(nbytes, dtype=torch.uint8, pin_memory=True)
        gpu = torch.empty(nbytes, dtype=torch.uint8, device=dev)
        ms = timeit(lambda: gpu.copy_(host, non_blocking=True), dev, 2, 10)
        res["h2d_pinned_GBps"] = nbytes / ms / 1e6
        res["block_bf16_MiB"] = nbytes / 2**20
        log(f"pinned H2D: {res['h2d_pinned_GBps']:.1f} GB/s for one {nbytes / 2**20:.0f} MiB block")
        del host, gpu
    swap_rows = []
    runs = [(int(n), "bf16") for n in args.swap.split(",")] + [(args.blocks, "fp8_per_channel")]
    with torch.no_grad():
        for n_host, kind in runs:
            if cuda:
                torch.cuda.empty_cache()
                torch.cuda.reset_peak_memory_stats(dev)
                base = torch.cuda.memory_allocated(dev)
            blocks = copy.deepcopy(master16)
            if kind != "bf16":
                quantize_linears(blocks, backend=backend)
            swap = BlockSwap(blocks, n_host, dev)
            sync(dev)
            row = {"n_on_host": n_host, "weights": kind}
            if cuda:
                row["resident_weights_MiB"] = (torch.cuda.memory_allocated(dev) - base) / 2**20
                torch.cuda.reset_peak_memory_stats(dev)
            y = run_stack(blocks, x)
            row["identical_to_no_swap"] = bool(torch.equal(y, y16 if kind == "bf16" else y8))
            row["ms"] = timeit(lambda: run_stack(blocks, x), dev, 2, 5)
            if cuda:
                row["peak_MiB"] = (torch.cuda.max_memory_allocated(dev) - base) / 2**20
            swap_rows.append(row)
            log(f"block swap N={n_host} ({kind}): {row['ms']:.2f} ms, "
                f"resident {row.get('resident_weights_MiB', 0):.0f} MiB, peak {row.get('peak_MiB', 0):.0f} MiB")
            swap.close()
            del blocks, swap
    base_ms = next(r["ms"] for r in swap_rows if r["n_on_host"] == 0 and r["weights"] == "bf16")
    for r in swap_rows:
        r["slowdown_vs_no_offload"] = r["ms"] / base_ms
    res["block_swap"] = swap_rows
    res["elapsed_s"] = time.time() - t0
    save()
    log("done")
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
