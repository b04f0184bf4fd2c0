"""End-to-end throughput of `vsrkit upscale` (decode -> engine -> encode -> remux) against the
engine alone, on one GPU: where a real run loses time outside the model.

Runs the real CLI on a generated clip with random full-size FlashVSR weights (official file
layout) and with the classical engine (no model: the pipeline's own ceiling), for a few output
codecs. The fixed cost (start-up, model load, compile) is taken out by timing a short and a long
run: FPS = (long - short frames) / (long - short seconds).

    python bench/pipeline.py [--size 480x270] [--frames 41,201] [--codecs h264,ffv1]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from multi_gpu import write_random_weights  # noqa: E402


def cli(clip: Path, out: Path, *args: str) -> tuple[float, str]:
    """Seconds of the whole command, and its stage summary (busy time per pipeline stage)."""
    t = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "vsrkit", "upscale", str(clip), "-o", str(out),
                        "--overwrite", *args], check=True, capture_output=True, text=True)
    secs = time.perf_counter() - t
    busy = [ln.split("busy: ")[1] for ln in (p.stdout + p.stderr).splitlines() if "busy: " in ln]
    return secs, busy[-1] if busy else "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="480x270", help="input WxH (output is 4x)")
    ap.add_argument("--frames", default="41,201", help="short,long frame counts")
    ap.add_argument("--codecs", default="h264,ffv1")
    ap.add_argument("--extra", default="", help="more CLI options for the FlashVSR runs")
    args = ap.parse_args()
    from tests.media import make_video

    work = Path(tempfile.mkdtemp())
    weights = write_random_weights(work / "w")
    w, h = map(int, args.size.split("x"))
    short, long_ = map(int, args.frames.split(","))
    clips = {n: make_video(work / f"clip{n}.mp4", frames=n, size=(w, h), audio="aac")
             for n in (short, long_)}
    print(f"input {w}x{h} -> {4 * w}x{4 * h}, {short} and {long_} frames")
    runs = [("lanczos", ["--model", "lanczos", "--scale", "4"])]
    runs += [("flashvsr", ["--model", "flashvsr-v1.1", "--weights", str(weights),
                           *args.extra.split()])]
    for codec in args.codecs.split(","):
        for label, opts in runs:
            ext = "mkv"
            res = {n: cli(clips[n], work / f"o{n}.{ext}", "--codec", codec, *opts) for n in clips}
            ts = {n: r[0] for n, r in res.items()}
            fps = (long_ - short) / (ts[long_] - ts[short])
            print(f"{label:9s} {codec:5s}: {fps:6.2f} FPS steady state "
                  f"(fixed cost {ts[short] - short / fps:.1f} s; {long_} frames in {ts[long_]:.1f} s;"
                  f" busy: {res[long_][1]})", flush=True)


if __name__ == "__main__":
    main()
