"""SeedVR2 speed on random full-size weights, in one command (CUDA, bf16), for 3B and 7B:

* one temporal batch (21 frames) at 1080x1920 output: VAE encode / DiT / VAE decode seconds,
  FPS and peak GPU memory (a warm-up run first);
* a 61-frame clip (540x960 in, x2) through the engine's real session (temporal batches of 21
  with the default overlap, colour fix, blending): FPS, DiT vs VAE split, peak GPU memory;
* the VAE alone at other tile sizes (fewer, larger tiles recompute less overlap) when they fit.

    python bench/seedvr2_speed.py                      # everything (~4-6 min on an H100)
    python bench/seedvr2_speed.py --models 3b --clip 0 # one model, batch only
    python bench/seedvr2_speed.py --tiny --device cpu  # a smoke run of this script on CPU

The attention fast paths are checked against the reference by the GPU test:
``pytest -m gpu tests/engines/seedvr2/test_attention.py``.
"""

import argparse
import time
from collections import defaultdict
from fractions import Fraction

import torch

from vsrkit.engines.base import EnginePlan
from vsrkit.engines.seedvr2 import DEFAULT_OVERLAP, DEFAULT_VAE_OVERLAP, SeedVR2Session
from vsrkit.engines.seedvr2.config import VAEConfig, dit_3b, dit_7b
from vsrkit.engines.seedvr2.dit import NaDiT, make_layout
from vsrkit.engines.seedvr2.vae import VideoVAE
from vsrkit.ops.attention import pick_varlen

TXT_LEN = 58  # pos_emb.pt: (58, 5120)


def random_init(m):
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.02) if p.ndim > 1 else p.fill_(1.0)
    return m


class Timer:
    """Wall seconds per phase (synchronized), summed over calls."""

    def __init__(self, dev):
        self.dev, self.s = dev, defaultdict(float)

    def sync(self):
        if self.dev.type == "cuda":
            torch.cuda.synchronize()

    def wrap(self, obj, name, phase):
        fn = getattr(obj, name)

        def timed(*a, **k):
            self.sync()
            t = time.perf_counter()
            y = fn(*a, **k)
            self.sync()
            self.s[phase] += time.perf_counter() - t
            return y

        setattr(obj, name, timed)


def peak_gib(dev):
    return torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else float("nan")


def reset_peak(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def vae_fns(vae, tile):
    enc = lambda v: vae.encode_moments(v, 1)  # noqa: E731
    dec = lambda z: vae.decode(z, 1)  # noqa: E731
    if tile:
        ov = DEFAULT_VAE_OVERLAP
        return (lambda v: vae.tiled(enc, v, 1 / 8, tile, ov, 8),
                lambda z: vae.tiled(dec, z, 8, tile // 8, ov // 8, 1))
    return enc, dec


def one_batch(name, dit, vae, txt, a, dev, dt):
    """VAE encode -> DiT -> VAE decode of one batch at the output size, timed per phase."""
    H, W = -(-a.height // 16) * 16, -(-a.width // 16) * 16
    x = torch.rand(1, 3, a.frames, H, W, device=dev, dtype=dt) * 2 - 1
    enc, dec = vae_fns(vae, a.vae_tile)
    for rep in range(2):  # the first run warms up (kernels, allocator)
        reset_peak(dev)
        tm = Timer(dev)
        with torch.no_grad():
            tm.sync()
            t0 = time.perf_counter()
            h = enc(x)
            tm.sync()
            t1 = time.perf_counter()
            z = h[:, :16].permute(0, 2, 3, 4, 1)[0]  # (t, h, w, 16)
            inp = torch.cat([torch.randn_like(z), z, torch.ones_like(z[..., :1])], -1)
            lay = make_layout(dit.c, (z.shape[0], z.shape[1] // 2, z.shape[2] // 2), TXT_LEN, dev)
            v = dit(inp, txt, 1000.0, lay)
            tm.sync()
            t2 = time.perf_counter()
            out = dec(v.permute(3, 0, 1, 2)[None])
            tm.sync()
            t3 = time.perf_counter()
        total = t3 - t0
        print(f"{name} batch of {a.frames} at {W}x{H}{' (warm-up)' if rep == 0 else ''}: "
              f"encode {t1 - t0:.2f}s, DiT {t2 - t1:.2f}s, decode {t3 - t2:.2f}s = {total:.2f}s; "
              f"{a.frames / total:.2f} FPS; peak {peak_gib(dev):.1f} GiB; out {tuple(out.shape)}",
              flush=True)
        del h, z, inp, v, out


def clip(name, dit, vae, txt, a, dev, dt):
    """A clip through the engine's session: temporal batches, blending, colour fix."""
    oh, ow = a.height, a.width
    ih, iw = oh // 2, ow // 2
    ch, cw = -(-oh // 16) * 16, -(-ow // 16) * 16
    overlap = min(DEFAULT_OVERLAP, a.frames - 1)
    details = {"resize": (oh, ow), "fit": "pad", "canvas": (ch, cw), "seed": 0,
               "batch_frames": a.frames, "temporal_overlap": overlap, "color_fix": "lab",
               "attention": pick_varlen(a.attention, dev, dt), "input_noise_scale": 0.0,
               "latent_noise_scale": 0.0,
               "vae_tiles": (a.vae_tile, DEFAULT_VAE_OVERLAP) if a.vae_tile else None}
    plan = EnginePlan(name, (ih, iw), (oh, ow), str(dev), "bf16", details=details)
    g = torch.Generator().manual_seed(0)
    frames = (torch.rand(a.clip, ih, iw, 3, generator=g) * 255).to(torch.uint8)
    del g
    tm = Timer(dev)
    tm.wrap(vae, "encode_moments", "VAE encode")
    tm.wrap(vae, "decode", "VAE decode")
    tm.wrap(dit, "forward", "DiT")
    reset_peak(dev)
    sess = SeedVR2Session(plan, (dit, vae, txt), dev, dt)
    n = 0
    tm.sync()
    t0 = time.perf_counter()
    for i in range(0, a.clip, 8):  # as the pipeline feeds it
        for y in sess.push(frames[i:i + 8]):
            n += y.shape[0]
    for y in sess.flush():
        n += y.shape[0]
    tm.sync()
    total = time.perf_counter() - t0
    for k in ("encode_moments", "decode", "forward"):
        delattr(vae if k != "forward" else dit, k)
    assert n == a.clip, (n, a.clip)
    other = total - sum(tm.s.values())
    split = ", ".join(f"{k} {v:.1f}s" for k, v in tm.s.items())
    print(f"{name} clip of {a.clip} frames {iw}x{ih} -> {ow}x{oh} (batches of {a.frames}, overlap "
          f"{overlap}): {total:.1f}s, {a.clip / total:.2f} FPS; {split}, other {other:.1f}s; "
          f"peak {peak_gib(dev):.1f} GiB", flush=True)


def vae_tiles(vae, a, dev, dt):
    """The VAE alone on one batch at other tile sizes (0: untiled), if they fit."""
    H, W = -(-a.height // 16) * 16, -(-a.width // 16) * 16
    x = torch.rand(1, 3, a.frames, H, W, device=dev, dtype=dt) * 2 - 1
    for tile in a.try_tiles:
        enc, dec = vae_fns(vae, tile)
        try:
            for rep in range(2):
                reset_peak(dev)
                with torch.no_grad():
                    t0 = time.perf_counter()
                    z = enc(x)[:, :16]
                    Timer(dev).sync()
                    t1 = time.perf_counter()
                    dec(z)
                    Timer(dev).sync()
                    t2 = time.perf_counter()
            print(f"VAE tile {tile or 'none'}: encode {t1 - t0:.2f}s, decode {t2 - t1:.2f}s for "
                  f"{a.frames} frames at {W}x{H}; peak {peak_gib(dev):.1f} GiB", flush=True)
        except torch.cuda.OutOfMemoryError:
            print(f"VAE tile {tile or 'none'}: out of memory", flush=True)
        z = None
        reset_peak(dev)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="3b,7b")
    ap.add_argument("--frames", type=int, default=21, help="frames per temporal batch (4n+1)")
    ap.add_argument("--clip", type=int, default=61, help="frames of the clip run (0: skip)")
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--vae-tile", type=int, default=512, help="VAE tile in output px (0: none)")
    ap.add_argument("--try-tiles", default="1088,768", help="VAE-only runs at these tiles")
    ap.add_argument("--attention", default="auto")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="small configs (a smoke run)")
    a = ap.parse_args()
    a.try_tiles = [int(t) for t in a.try_tiles.split(",") if t != ""]
    dev = torch.device(a.device)
    dt = torch.bfloat16 if dev.type == "cuda" else torch.float32
    if dev.type == "cuda":
        print(torch.cuda.get_device_name(), f"torch {torch.__version__}", flush=True)
    torch.manual_seed(0)
    vcfg = VAEConfig(channels=(16, 16, 32, 32), norm_groups=4) if a.tiny else VAEConfig()
    with torch.device(dev):
        vae = random_init(VideoVAE(vcfg).to(dt)).eval()
    for name in a.models.split(","):
        t0 = time.perf_counter()
        small = dict(vid_dim=64, heads=2, head_dim=32, num_layers=2)
        cfg = (dit_3b if name == "3b" else dit_7b)(**(small if a.tiny else {}))
        if cfg.arch == "3b" and a.tiny:
            cfg = dit_3b(**small, mm_layers=1)
        with torch.device(dev):
            dit = random_init(NaDiT(cfg).to(dt)).eval()
            txt = dit.embed_text(torch.randn(TXT_LEN, cfg.txt_in_dim, dtype=dt)).detach()
        dit.set_attention(pick_varlen(a.attention, dev, dt))
        print(f"seedvr2-{name}: {sum(p.numel() for p in dit.parameters()) / 1e9:.2f} B DiT "
              f"parameters, attention {dit.blocks[0].attn.attention}, VAE tiles {a.vae_tile or 'none'}"
              f" (built in {time.perf_counter() - t0:.0f}s)", flush=True)
        one_batch(name, dit, vae, txt, a, dev, dt)
        if a.clip:
            clip(name, dit, vae, txt, a, dev, dt)
        del dit, txt
        reset_peak(dev)
    if a.try_tiles:
        vae_tiles(vae, a, dev, dt)


if __name__ == "__main__":
    main()
