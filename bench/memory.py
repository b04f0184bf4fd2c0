"""Bounded memory: upscale a generated 300-frame and 3000-frame 480p clip with the classical
engine and print the peak RSS of each run (a real `vsrkit upscale` subprocess). The two peaks
must differ by less than 10 %: host memory does not grow with the video's length.

    python bench/memory.py [--scale 2] [--model lanczos] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_clip(path: Path, frames: int, w: int = 854, h: int = 480) -> Path:
    """A moving gradient with AAC audio, H.264 (ultrafast, so generating is quick)."""
    with av.open(str(path), "w") as c:
        v = c.add_stream("libx264", rate=Fraction(30000, 1001), options={"preset": "ultrafast"})
        v.width, v.height, v.pix_fmt = w, h, "yuv420p"
        a = c.add_stream("aac", rate=48000)
        y, x = np.mgrid[0:h, 0:w]
        for i in range(frames):
            img = np.stack([(x + 3 * i) % 256, (y + 2 * i) % 256, (x + y + i) % 256], -1)
            for p in v.encode(av.VideoFrame.from_ndarray(img.astype(np.uint8), "rgb24")):
                c.mux(p)
        n_audio = int(frames * 1001 / 30000 * 48000)
        for s in range(0, n_audio, 1024):
            n = min(1024, n_audio - s)
            af = av.AudioFrame.from_ndarray(np.zeros((1, n), np.float32), "fltp", "mono")
            af.sample_rate, af.pts = 48000, s
            for p in a.encode(af):
                c.mux(p)
        c.mux(v.encode())
        c.mux(a.encode())
    return path


def peak_rss_of(cmd: list[str]) -> tuple[float, float]:
    """(peak RSS in MiB, seconds) of one child process."""
    t = time.monotonic()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"command failed: {' '.join(cmd)}")
    return usage.ru_maxrss / 1024, time.monotonic() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lanczos")
    ap.add_argument("--scale", default="2")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--lengths", default="300,3000")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vsrkit-bench-"))
    rows = []
    for n in map(int, args.lengths.split(",")):
        clip = work / f"clip_{n}.mp4"
        if not clip.exists():
            make_clip(clip, n)
        out = work / f"clip_{n}_out.mkv"
        rss, secs = peak_rss_of([sys.executable, "-m", "vsrkit", "upscale", str(clip), "-o",
                                 str(out), "--model", args.model, "--scale", args.scale,
                                 "--overwrite", "--quiet", "--device", "cpu"])
        rows.append((n, rss, secs))
        print(f"{n:5d} frames: peak RSS {rss:7.1f} MiB, {secs:6.1f} s ({n / secs:.1f} fps)")
    if len(rows) >= 2:
        a, b = rows[0][1], rows[-1][1]
        print(f"peak RSS ratio {rows[-1][0]}/{rows[0][0]} frames: {b / a:.3f} "
              f"({'OK' if abs(b - a) / a < 0.10 else 'FAIL'}: must differ by < 10 %)")


if __name__ == "__main__":
    main()
