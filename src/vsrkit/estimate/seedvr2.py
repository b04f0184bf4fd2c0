"""SeedVR2's peak memory and time per frame, from the tensors one temporal batch holds.

A batch of ``T`` frames (``batch_frames``, padded to 4n+1) at the canvas size runs three
phases one after the other, each on top of the weights and the batch's input copies:

* VAE encode (in spatial tiles with ``vae_tiles``, each tile through every time chunk);
* the DiT over ``t * h * w`` tokens (t = (T-1)/4 + 1 latent frames, h, w = canvas / 16);
* VAE decode (tiles blended into float32 accumulators of the whole batch).

Input copies per pixel and frame: the float32 resize (the colour reference), its padded copy
and the dtype copy the VAE reads. The VAE coefficients are per pixel of a tile at the published
widths (128, 256, 512, 512), bf16, with time chunks of 1 latent (what the engine runs), read
off the code's tensors on the meta device (bench/live_bytes.py); they do not depend on T (the
chunks carry 2-frame causal caches). The DiT's per-token coefficient likewise (windows gathered
per group, q/k RoPE in float32, the SwiGLU hidden).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .common import (DTYPE_BYTES, H100_RATES, Estimate, Weights, conv_params, linear_params,
                     placed_weights, swap_seconds)

ENC_PER_PX_BF16 = 19162  # encode, per input pixel of a tile (meta, 512x512 and 256x512 tiles)
DEC_PER_PX_BF16 = 33362  # decode, per output pixel of a tile
ENC_FLOPS_PER_PX = 9.08e6  # per pixel and frame (FlopCounterMode on meta, published widths)
DEC_FLOPS_PER_PX = 23.8e6
ACT_FLOAT32 = 8.0  # bytes per (token x D) of the DiT block: float32 RoPE/norm temporaries
# ... and the dtype's: 78.6 at bf16 (3B, 1088x1920, 48960 tokens: 9.18 GiB on meta), the
# windows gathered with their text copies by the varlen dispatch and the SwiGLU hidden
ACT_PER_DTYPE_BYTE = 35.3
# cuDNN's workspace of the VAE's 3x3x3 convolutions is not in the peak: it is opportunistic.
# Without autotuning PyTorch tries cuDNN's heuristic plans in order and skips one whose
# workspace cannot be allocated ("Plan failed with an OutOfMemoryError"), so a run that is
# short of memory takes a plan with less. On the H100 with memory to spare the preferred plan
# for 512x512 tiles unfolded its input (27 taps x 128 channels x 6 frames x the tile: ~10 GiB
# seen over the tensors, main at dc1600f); for the balanced 408x440 tiles the engine runs at
# 1080p (949ec2b) the whole batch peaked at 15.31 GiB, below the tensors' DiT phase alone: no
# such workspace was taken. What a plan needs is the tensors.
TEXT_TOKENS = 58  # rows of pos_emb.pt


@dataclass(frozen=True)
class SeedVR2Shapes:
    dit: object  # config.DiTConfig
    vae: object  # config.VAEConfig
    text_tokens: int = TEXT_TOKENS


# -- weights ---------------------------------------------------------------------------------

def dit_weights(c) -> Weights:
    D, inner, hm = c.vid_dim, c.heads * c.head_dim, c.mlp_hidden
    lins, others = [], []
    for i in range(c.num_layers):
        shared = i >= c.mm_layers
        vid_only = c.arch == "3b" and i == c.num_layers - 1
        n_attn = 1 if shared else 2
        n_mlp = 1 if shared or vid_only else 2
        w = n_attn * (3 * inner * D + inner * D)
        rows = n_attn * (3 * inner + D)
        o = n_attn * (D + 2 * c.head_dim)  # proj_out bias, q/k RMSNorm
        if c.arch == "3b":  # SwiGLU, no biases
            w += n_mlp * 3 * D * hm
            rows += n_mlp * (2 * hm + D)
        else:
            w += n_mlp * 2 * D * hm
            rows += n_mlp * (hm + D)
            o += n_mlp * (hm + D)
        o += n_mlp * 6 * D  # AdaSingle shift/scale/gate for attn and mlp
        lins.append((w, rows))
        others.append(o)
    rest = (linear_params(c.in_channels * 4, D) + linear_params(c.txt_in_dim, D)
            + linear_params(c.hidden_act_in, D) + linear_params(D, D) + linear_params(D, c.emb_dim)
            + linear_params(D, c.out_channels * 4))
    if c.arch == "3b":
        rest += D + 2 * D  # output RMSNorm, its shift/scale
    return Weights(tuple(lins), tuple(others), rest)


def _resnet(cin: int, cout: int) -> int:
    return (2 * cin + conv_params(cin, cout, (3, 3, 3)) + 2 * cout + conv_params(cout, cout, (3, 3, 3))
            + (conv_params(cin, cout, (1, 1, 1)) if cin != cout else 0))


def _mid(c: int) -> int:
    return 2 * c + 4 * linear_params(c, c) + 2 * _resnet(c, c)


def vae_params(v) -> int:
    ch, n, L, z = v.channels, len(v.channels), v.layers_per_block, v.latent_channels
    enc = conv_params(3, ch[0], (3, 3, 3))
    for i in range(n):
        enc += sum(_resnet(ch[max(i - 1, 0)] if j == 0 else ch[i], ch[i]) for j in range(L))
        if i < n - 1:
            kt = 3 if i >= n - v.temporal_down - 1 else 1
            enc += conv_params(ch[i], ch[i], (kt, 3, 3))
    enc += _mid(ch[-1]) + 2 * ch[-1] + conv_params(ch[-1], 2 * z, (3, 3, 3))
    r = list(reversed(ch))
    dec = conv_params(z, r[0], (3, 3, 3)) + _mid(r[0])
    for i in range(n):
        dec += sum(_resnet(r[max(i - 1, 0)] if j == 0 else r[i], r[i]) for j in range(L + 1))
        if i < n - 1:
            rt = 2 if i < v.temporal_down else 1
            dec += conv_params(r[i], r[i] * 4 * rt, (1, 1, 1)) + conv_params(r[i], r[i], (3, 3, 3))
    dec += 2 * r[-1] + conv_params(r[-1], 3, (3, 3, 3))
    return enc + dec


# -- sizes -----------------------------------------------------------------------------------

def pad_4n1(n: int) -> int:
    return n if n <= 1 else max(5, n + (-(n - 1)) % 4)


def tile_spans(size: int, tile: int | None, overlap: int, multiple: int) -> list[tuple[int, int]]:
    """The spans the engine's VAE tiles over ``size`` (``VideoVAE.tiled``: balanced tiles)."""
    from ..tiling import balanced_grid

    if not tile:
        return [(0, size)]
    return balanced_grid(size, tile, overlap, multiple)


def vae_tile_spans(canvas: tuple[int, int], vae_tiles: tuple[int, int] | None, f: int):
    """``(encode, decode)`` spans, each a pair (rows, columns) in output pixels: the encoder
    tiles the canvas in pixels on the ``f`` grid, the decoder the latent (tile / f, overlap / f),
    so their tiles can differ by a few pixels."""
    tile, ov = vae_tiles or (None, 0)
    enc = tuple(tile_spans(n, tile, ov, f) for n in canvas)
    dec = tuple([(a * f, b * f) for a, b in tile_spans(n // f, tile and tile // f, ov // f, 1)]
                for n in canvas)
    return enc, dec


def largest_tile(spans) -> int:
    hs, ws = spans
    return max(b - a for a, b in hs) * max(b - a for a, b in ws)


def tiled_area(spans) -> int:
    """Pixels computed per frame over all tiles (overlaps counted as often as computed)."""
    hs, ws = spans
    return sum(b - a for a, b in hs) * sum(b - a for a, b in ws)


def window_tokens(c, grid: tuple[int, int, int]) -> int:
    from ..engines.seedvr2.windows import window_sizes

    wt, wh, ww = window_sizes(*grid, c.windows)
    return min(wt, grid[0]) * min(wh, grid[1]) * min(ww, grid[2])


# -- the estimate ----------------------------------------------------------------------------

def estimate(s: SeedVR2Shapes, canvas: tuple[int, int], out_size: tuple[int, int] | None = None, *,
             batch_frames: int = 33, temporal_overlap: int = 4, dtype: str = "bf16",
             vae_tiles: tuple[int, int] | None = None, offload_blocks: int = 0,
             weights_dtype: str | None = None,
             rates: dict[str, float] = H100_RATES) -> Estimate:
    """Peak GPU bytes, pinned host bytes and seconds per output frame of SeedVR2 on a canvas
    ``(Hc, Wc)`` (multiples of 16), batches of ``batch_frames`` overlapping by
    ``temporal_overlap``; ``vae_tiles`` = (tile, overlap) in output pixels, tiled as the
    engine tiles (``vae_tile_spans``)."""
    c, v = s.dit, s.vae
    b = DTYPE_BYTES[dtype]
    hc, wc = canvas
    oh, ow = out_size or canvas
    px = hc * wc
    T = pad_4n1(batch_frames)
    f = v.spatial_factor
    dit_w = dit_weights(c)
    w_gpu, w_host = placed_weights(dit_w, dtype, weights_dtype, offload_blocks)
    weights = w_gpu + vae_params(v) * b
    txt = s.text_tokens * c.vid_dim * b
    # the float32 resize (colour reference), its padded copy, the dtype copy the VAE reads
    inputs = 4 * 3 * batch_frames * oh * ow + 4 * 3 * batch_frames * px + b * 3 * T * px
    width = v.channels[0] / 128 * b / 2
    enc_spans, dec_spans = vae_tile_spans(canvas, vae_tiles, f)
    enc_px, dec_px = largest_tile(enc_spans), largest_tile(dec_spans)
    t_lat = (T - 1) // v.temporal_factor + 1
    latents = 3 * 4 * v.latent_channels * t_lat * px // (f * f)  # moments, noise, x0 (float32)
    grid = (t_lat, hc // (2 * f), wc // (2 * f))  # 1x2x2 patches of the latent
    tokens = math.prod(grid)
    act = (ACT_FLOAT32 + ACT_PER_DTYPE_BYTE * b) * tokens * c.vid_dim
    # blended tiles add into float32 accumulators; one tile is decoded as it is (VideoVAE.tiled)
    one_tile = all(len(spans) == 1 for spans in dec_spans)
    accum = b * 3 * T * px if one_tile else 4 * 3 * T * px + 4 * px
    base = weights + txt + inputs
    phases = {
        "VAE encode": base + int(ENC_PER_PX_BF16 * width * enc_px),
        "DiT": base + latents + int(act),
        "VAE decode": base + latents + accum + int(DEC_PER_PX_BF16 * width * dec_px),
    }
    phase = max(phases, key=phases.get)
    parts = {"weights": weights, "inputs": inputs, "step": phases[phase] - base}
    # time: one batch yields (batch - overlap) new frames
    w2 = (v.channels[0] / 128) ** 2
    inner, hm = c.heads * c.head_dim, c.mlp_hidden
    mlp = 3 * c.vid_dim * hm if c.arch == "3b" else 2 * c.vid_dim * hm
    per_token = c.num_layers * (2 * (4 * inner * c.vid_dim + mlp)
                                + 4 * inner * (window_tokens(c, grid) + s.text_tokens))
    dit_s = per_token * tokens / rates["dit_windows"]
    vae_s = ((ENC_FLOPS_PER_PX * tiled_area(enc_spans) + DEC_FLOPS_PER_PX * tiled_area(dec_spans))
             * w2 * T / rates["conv3d"])
    batch_s = dit_s + vae_s + swap_seconds(dit_w.block_bytes(dtype, weights_dtype),
                                           offload_blocks, dit_s, 1)
    stride = max(1, batch_frames - temporal_overlap)
    return Estimate(phases[phase], w_host, batch_s / stride, parts, phase)


# -- into the plan -----------------------------------------------------------------------------

def fill(plan, shapes: SeedVR2Shapes) -> None:
    from .common import apply, device_rates, knobs

    d = plan.details
    n_off, wdt = knobs(d)
    est = estimate(shapes, tuple(d["canvas"]), tuple(plan.out_size),
                   batch_frames=d["batch_frames"], temporal_overlap=d["temporal_overlap"],
                   dtype=plan.dtype, vae_tiles=d.get("vae_tiles"), offload_blocks=n_off,
                   weights_dtype=wdt,
                   rates=device_rates(plan.device))
    apply(plan, est)
