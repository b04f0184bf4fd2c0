"""Segment seams: per-frame PSNR between a segmented run and one unbroken run, at the frames
right after each segment boundary vs everywhere else (FlashVSR Tiny, tiny random checkpoint on
CPU by default).

    python bench/seams.py [--frames 160] [--segment-frames 40] [--size 32x32]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import av
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import vsrkit  # noqa: E402
from tests.engines.flashvsr.tiny import make_tiny_flashvsr  # noqa: E402
from tests.media import make_video  # noqa: E402


def frames(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24").astype(np.float64) for f in c.decode(video=0)]


def psnr(a, b):
    mse = ((a - b) ** 2).mean()
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=160)
    ap.add_argument("--segment-frames", type=int, default=40)
    ap.add_argument("--size", default="32x32")
    ap.add_argument("--near", type=int, default=8, help="frames after a boundary counted as seam")
    ap.add_argument("--full", action="store_true",
                    help="random full-size weights on CUDA instead of the tiny CPU checkpoint")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp())
    if args.full:
        sys.path.insert(0, str(Path(__file__).parent))
        from multi_gpu import write_random_weights

        w, device = write_random_weights(work / "w"), "cuda"
    else:
        w, device = make_tiny_flashvsr(work / "w"), "cpu"
    W, H = map(int, args.size.split("x"))
    clip = make_video(work / "clip.mkv", frames=args.frames, size=(W, H))
    common = dict(model="flashvsr-v1.1", weights=str(w), device=device, codec="ffv1")
    vsrkit.upscale(clip, work / "one.mkv", **common)
    vsrkit.upscale(clip, work / "seg.mkv", segment_frames=args.segment_frames, **common)
    a, b = frames(work / "one.mkv"), frames(work / "seg.mkv")
    assert len(a) == len(b) == args.frames
    p = np.array([psnr(x, y) for x, y in zip(a, b)])
    L = args.segment_frames
    seam = [i for i in range(L, args.frames) if (i % L) < args.near]
    inner = [i for i in range(L, args.frames) if (i % L) >= args.near]
    first = p[:L]
    print(f"{args.frames} frames, segments of {L} with the engine's warm-up; PSNR (dB) of the "
          f"segmented run against the unbroken run:")
    print(f"  first segment: {'identical' if np.isinf(first).all() else f'min {first.min():.2f}'}")
    print(f"  first {args.near} frames after each boundary: mean {p[seam].mean():.2f}, "
          f"min {p[seam].min():.2f}")
    print(f"  other frames of later segments:             mean {p[inner].mean():.2f}, "
          f"min {p[inner].min():.2f}")
    for k in range(1, args.frames // L):
        print(f"  boundary {k * L}: " + " ".join(f"{x:.1f}" for x in p[k * L - 2:k * L + 6]))


if __name__ == "__main__":
    main()
