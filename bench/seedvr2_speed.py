"""SeedVR2 speed on random full-size weights (CUDA): one temporal batch at 1080x1920 output,
time split VAE encode / DiT / VAE decode, FPS and peak GPU memory; plus the fast attention path
(bf16 SDPA) against the fp32 reference on one real-size block.

    python bench/seedvr2_speed.py [--model 3b|7b] [--frames 21] [--height 1080 --width 1920]
"""

import argparse
import time

import torch

from vsrkit.engines.seedvr2.config import VAEConfig, dit_3b, dit_7b
from vsrkit.engines.seedvr2.dit import Block, make_layout, NaDiT
from vsrkit.engines.seedvr2.vae import VideoVAE


def random_init(m):
    with torch.no_grad():
        for p in m.parameters():
            p.normal_(0, 0.02) if p.ndim > 1 else p.fill_(1.0 if p.ndim == 1 else 0.0)
    return m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="3b")
    ap.add_argument("--frames", type=int, default=21)
    ap.add_argument("--height", type=int, default=1080)
    ap.add_argument("--width", type=int, default=1920)
    ap.add_argument("--vae-tile", type=int, default=512, help="VAE tile in output px (0: none)")
    a = ap.parse_args()
    dev, dt = torch.device("cuda"), torch.bfloat16
    cfg = dit_3b() if a.model == "3b" else dit_7b()
    torch.manual_seed(0)
    with torch.device(dev):
        dit = random_init(NaDiT(cfg).to(dt)).eval()
        vae = random_init(VideoVAE(VAEConfig()).to(dt)).eval()
    H, W = -(-a.height // 16) * 16, -(-a.width // 16) * 16
    x = torch.rand(1, 3, a.frames, H, W, device=dev, dtype=dt) * 2 - 1
    txt = dit.embed_text(torch.randn(58, 5120, device=dev, dtype=dt))

    # fast attention vs reference on one real-size block (bf16 sdpa vs fp32 math on the same input)
    with torch.no_grad():
        t_lat = (a.frames - 1) // 4 + 1
        grid = (t_lat, H // 16, W // 16)
        lay = make_layout(cfg, grid, 58, dev)
        blk = dit.blocks[0]
        vid = torch.randn(grid[0] * grid[1] * grid[2], cfg.vid_dim, device=dev)
        tx = torch.randn(58, cfg.vid_dim, device=dev)
        ref_attn = blk.attn.float()
        with torch.backends.cuda.sdp_kernel(enable_flash=False, enable_mem_efficient=False, enable_math=True):
            r_v, r_t = ref_attn(vid, tx, lay)
        blk.attn.to(dt)
        f_v, f_t = blk.attn(vid.to(dt), tx.to(dt), lay)
        rel = ((f_v.float() - r_v).norm() / r_v.norm()).item()
        print(f"attention: bf16 SDPA vs fp32 reference, relative error {rel:.2e} (bf16 floor ~4e-3)")
        del r_v, r_t, f_v, f_t, vid, tx

    def timed(fn):
        torch.cuda.synchronize(); t = time.perf_counter(); y = fn(); torch.cuda.synchronize()
        return y, time.perf_counter() - t

    with torch.no_grad():
        for rep in range(2):  # first run warms up kernels
            torch.cuda.reset_peak_memory_stats()
            enc = lambda v: vae.encode_moments(v, 1)  # noqa: E731
            dec = lambda z_: vae.decode(z_, 1)  # noqa: E731
            if a.vae_tile:  # as --tiled-vae: 1080p does not fit in one piece
                enc = lambda v, f=enc: vae.tiled(f, v, 1 / 8, a.vae_tile, 64, 8)  # noqa: E731
                dec = lambda z_, f=dec: vae.tiled(f, z_, 8, a.vae_tile // 8, 8, 1)  # noqa: E731
            h, t_enc = timed(lambda: enc(x))
            z = h[:, :16].permute(0, 2, 3, 4, 1)[0]  # (t, h, w, 16)
            inp = torch.cat([torch.randn_like(z), z, torch.ones_like(z[..., :1])], -1)
            lay = make_layout(cfg, (z.shape[0], z.shape[1] // 2, z.shape[2] // 2), 58, dev)
            v, t_dit = timed(lambda: dit(inp, txt, 1000.0, lay))
            out, t_dec = timed(lambda: dec(v.permute(3, 0, 1, 2)[None]))
            peak = torch.cuda.max_memory_allocated() / 2**30
            total = t_enc + t_dit + t_dec
            print(f"run {rep}: {a.model} {a.frames} frames {W}x{H}: encode {t_enc:.2f}s, DiT {t_dit:.2f}s, "
                  f"decode {t_dec:.2f}s; {a.frames / total:.2f} FPS; peak {peak:.1f} GiB; out {tuple(out.shape)}")


if __name__ == "__main__":
    main()
