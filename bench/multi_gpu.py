"""Segment-parallel scaling: FlashVSR Tiny with random full-size weights (written in the
official file layout) on a generated clip, once on one GPU and once with --devices all, through
the real CLI; prints FPS, scaling efficiency and whether the frames are identical.

    python bench/multi_gpu.py [--frames 600] [--size 480x270] [--segment-frames 150]
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import torch


def write_random_weights(folder: Path) -> Path:
    from safetensors.torch import save_file

    sys.path.insert(0, str(Path(__file__).parent))
    from flashvsr_speed import FULL

    from vsrkit.engines.flashvsr.dit import WanDiT
    from vsrkit.engines.flashvsr.lq_proj import LQProjector
    from vsrkit.engines.flashvsr.tcdecoder import TCDecoder

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    for mod, name in ((WanDiT(FULL), "diffusion_pytorch_model_streaming_dmd.safetensors"),
                      (LQProjector(3, 2048, 3072, 1536, causal=True), "LQ_proj_in.ckpt"),
                      (TCDecoder([512, 256, 128, 128]), "TCDecoder.ckpt")):
        sd = {}
        for k, v in mod.state_dict().items():
            v = v.cuda()
            if v.ndim > 1 and not k.endswith("modulation"):
                v = torch.randn_like(v) * min(0.02, v[0].numel() ** -0.5)
            sd[k] = v.to(torch.bfloat16).cpu().contiguous()
        if name.endswith(".safetensors"):
            save_file(sd, str(folder / name))
        else:
            torch.save(sd, folder / name)
    torch.save(torch.randn(1, 512, 4096).to(torch.bfloat16), folder / "posi_prompt.pth")
    return folder


def hashes(path: Path) -> list[str]:
    with av.open(str(path)) as c:
        return [hashlib.sha256(f.to_ndarray(format="rgb24").tobytes()).hexdigest()
                for f in c.decode(video=0)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=600)
    ap.add_argument("--size", default="480x270")
    ap.add_argument("--segment-frames", type=int, default=150)
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp())
    weights = write_random_weights(work / "w")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.media import make_video

    w, h = map(int, args.size.split("x"))
    clip = make_video(work / "clip.mp4", frames=args.frames, size=(w, h), audio="aac")
    n_gpu = torch.cuda.device_count()
    print(f"{n_gpu} x {torch.cuda.get_device_name()}; {args.frames} frames {w}x{h} -> "
          f"{4 * w}x{4 * h}; segments of {args.segment_frames}")
    res = {}
    for label, dev in (("1 GPU", ["--devices", "cuda:0"]), (f"{n_gpu} GPUs", ["--devices", "all"])):
        out = work / f"out_{len(res)}.mkv"
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "vsrkit", "upscale", str(clip), "-o", str(out),
                        "--model", "flashvsr-v1.1", "--weights", str(weights), "--codec", "ffv1",
                        "--segment-frames", str(args.segment_frames), "--quiet", *dev], check=True)
        secs = time.perf_counter() - t
        res[label] = (secs, out)
        print(f"{label}: {args.frames / secs:.2f} FPS ({secs:.1f} s, model load included)")
    (s1, o1), (sn, on) = res.values()
    print(f"scaling efficiency: {(args.frames / sn) / (n_gpu * args.frames / s1):.3f}")
    h1, hn = hashes(o1), hashes(on)
    print(f"frames identical: {h1 == hn} ({len(h1)} vs {len(hn)} frames, "
          f"{sum(a != b for a, b in zip(h1, hn))} differ)")


if __name__ == "__main__":
    main()
