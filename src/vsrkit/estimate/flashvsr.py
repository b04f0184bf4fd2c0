"""FlashVSR's peak memory and time per frame, from the tensors a step holds.

A stream runs step 0 (6 latent frames -> 21 output frames) and then steps of 2 latent frames
(8 output frames). Token grid per latent frame: ``hw = (Hp/16)(Wp/16)``; a temporal group of
the KV cache is 2 latent frames, ``g = 2 hw`` tokens. What is live (bytes, ``b`` = dtype size):

* weights: the DiT (blocks resident or swapped in, ``offload_blocks``), the LQ projector, the
  decoder; the prompt's cross-attention K/V per block: ``layers * 2 * 512 * D * b``;
* the self-attention KV cache: ``layers * 2 * (G + 1) * g * D * b`` for ``G = int(kv_ratio)``
  kept groups. G + 1, not G: each block keeps a view of the concatenation of G cached groups
  and the step's own, so the dropped group's storage lives until the next step's concatenation;
  step 0 keeps 3 groups;
* the decoder's state: TCDecoder MemBlocks' last inputs (3 per stage), the Wan VAE's 2-frame
  cache per causal conv;
* LQ frames and step buffers: ``HELD_PER_PX`` per canvas pixel (the upsampled LQ frames the next
  steps read, as views of their push batches, plus the noise/latents of a step);
* the transient of the phase that peaks: a DiT block at step 0 (3 groups of tokens) or later
  (one group, plus one block's concatenated K/V), or the decoder on one step's latents.

The per-token and per-pixel coefficients below were read off the code's own tensors, at full
size on the meta device (bench/live_bytes.py); summed, they give the peak the meta run of a
whole stream gives (Tiny 1408x768 / 1920x1280 / 1920x1152 canvas: 11.92 / 22.84 / 20.88 GiB
predicted, 11.98 / 22.96 / 20.97 GiB traced; Full 1408x768 before its cuDNN term: 19.51 / 19.45).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .common import (DTYPE_BYTES, H100_RATES, Estimate, Weights, conv_params, linear_params,
                     placed_weights, swap_seconds)

PROMPT_TOKENS = 512  # rows of posi_prompt.pth (the text K/V cached per block)
WIN_TOKENS = 128  # an LCSA window: 2 latent frames x 8 x 8 patches
STEP0_GROUPS = 3  # step 0 runs 6 latent frames = 3 temporal groups
STEP_LATENTS = 2  # latent frames per later step (8 output frames)
# Bytes per (token x D) live in a DiT block besides its K/V: RoPE rotates q and k in float64
# (x.double() and the complex product: ~16 B), RMSNorm statistics in float32, the FFN hidden
# (ffn_dim/D = 5.8 activations) and its GELU; measured 52.7 at bf16 (meta, 768x1408).
ACT_FLOAT64 = 16.0
ACT_PER_DTYPE_BYTE = 18.35
# LQ frames (upsampled, canvas size, views of their push batch) and step buffers per canvas
# pixel at bf16 (meta: 480 B/px at 768x1408 and 1152x1920, scales with the dtype).
HELD_PER_PX_BF16 = 480
# The Wan2.1 VAE decoder at dim 96, bf16, per decoded pixel (meta): the causal caches of a
# stream (2 time steps of every conv's input) and the transient of one 2-latent step.
WAN_STATE_PER_PX, WAN_STEP_PER_PX = 4730, 5026
WAN_FLOPS_PER_PX = 8.45e6  # per output pixel and frame (FlopCounterMode on meta, dim 96)
# GPU only: the Wan decoder's 3-D convolutions run NCDHW bf16 through cuDNN, whose workspace
# max_memory_allocated sees and the meta run does not: per decoded canvas pixel of a tile, the
# H100's measured decoder phase of Full at 1408x768 (22.07 GiB after the bench's held outputs)
# over the tensors (19.45 GiB, meta). The TCDecoder needs no such term since it runs in
# channels_last: Tiny's measured peak at 1408x768 equals its tensors (12.00 vs 11.98 GiB).
WAN_WORKSPACE_PER_PX = 2600


@dataclass(frozen=True)
class FlashVSRShapes:
    """What sizes the memory: the DiT config, the LQ projector widths, the decoder."""

    dim: int
    ffn_dim: int
    num_layers: int
    in_dim: int = 16
    text_dim: int = 4096
    freq_dim: int = 256
    out_dim: int = 16
    patch: tuple[int, int, int] = (1, 2, 2)
    lq: tuple[int, int, int] = (3, 2048, 3072)  # (input channels, hidden1, hidden2)
    tc: tuple[int, int, int, int] | None = (512, 256, 128, 128)  # TCDecoder widths (tiny)
    tc_cond: int = 768  # LQ channels the TCDecoder reads
    vae_params: int = 0  # Wan2.1 decoder + conv2 parameters (full), from the file's header
    vae_dim: int = 96
    prompt_tokens: int = PROMPT_TOKENS

    @classmethod
    def from_configs(cls, dit, lq=None, tc=None, vae_params: int = 0, vae_dim: int = 96,
                     prompt_tokens: int = PROMPT_TOKENS) -> "FlashVSRShapes":
        """From a ``dit.DiTConfig``, an ``LQProjector`` shape tuple and TCDecoder widths."""
        return cls(dim=dit.dim, ffn_dim=dit.ffn_dim, num_layers=dit.num_layers, in_dim=dit.in_dim,
                   text_dim=dit.text_dim, freq_dim=dit.freq_dim, out_dim=dit.out_dim,
                   patch=tuple(dit.patch), lq=tuple(lq or cls.lq), tc=tuple(tc) if tc else None,
                   vae_params=vae_params, vae_dim=vae_dim, prompt_tokens=prompt_tokens)


# -- weights ---------------------------------------------------------------------------------

def dit_weights(s: FlashVSRShapes) -> Weights:
    D, F = s.dim, s.ffn_dim
    p = math.prod(s.patch)
    # self-attn q k v o + cross-attn q k v o (D x D) and the FFN; their rows carry FP8 scales
    lin = (8 * D * D + 2 * D * F, 8 * D + F + D)
    # linear biases (8D + F + D), q/k RMSNorms (4D), norm3 weight and bias (2D), modulation 6D
    other = 21 * D + F
    rest = (conv_params(s.in_dim, D, s.patch)
            + linear_params(s.text_dim, D) + linear_params(D, D)
            + linear_params(s.freq_dim, D) + linear_params(D, D)
            + linear_params(D, 6 * D)
            + linear_params(D, s.out_dim * p) + 2 * D)
    return Weights((lin,) * s.num_layers, (other,) * s.num_layers, rest)


def lq_params(s: FlashVSRShapes) -> int:
    c, h1, h2 = s.lq
    return (conv_params(c * 256, h1, (4, 3, 3)) + h1 + conv_params(h1, h2, (4, 3, 3)) + h2
            + linear_params(h2, s.dim))


def tc_params(s: FlashVSRShapes, latent: int = 16) -> int:
    c0, c1, c2, c3 = s.tc
    mem = lambda c: conv_params(2 * c, c, (3, 3)) + 2 * conv_params(c, c, (3, 3))  # noqa: E731
    return (conv_params(latent + s.tc_cond, c0, (3, 3)) + c0 * c0 * 9 + 3 * mem(c0)
            + c0 * c0 + c0 * c1 * 9 + 3 * mem(c1)
            + 2 * c1 * c1 + c1 * c2 * 9 + 3 * mem(c2)
            + 2 * c2 * c2 + c2 * c3 * 9 + c3 * c3 * 9 + conv_params(c3, 3, (3, 3)))


def decoder_params(s: FlashVSRShapes, variant: str) -> int:
    return s.vae_params if variant == "full" else tc_params(s)


# -- activations ---------------------------------------------------------------------------

def tc_bytes(s: FlashVSRShapes, px: int, b: int, latents: int) -> tuple[int, int]:
    """(state, transient) of the TCDecoder on a canvas of ``px`` pixels. State: each MemBlock's
    last input (3 per stage, at 1/64, 1/16, 1/4 of the pixels). Transient of a step, decoded
    depth first: every stage's upsampled input and its TGrow output stay referenced while the
    frames under them are decoded (c0 + c0 at 1/16, c1 + 2 c1 at 1/4, c2 + 2 c2 at full size),
    the last convolution's input and output (2 c3), and the step's LQ condition, its copy and
    the output frames (3 x 4T frames of 3 channels)."""
    c0, c1, c2, c3 = s.tc
    state = 3 * (c0 * px // 64 + c1 * px // 16 + c2 * px // 4) * b
    held = (2 * c0 * px // 16 + 3 * c1 * px // 4 + 3 * c2 * px) * b
    io = 3 * (4 * latents) * 3 * px * b
    return state, held + 2 * c3 * px * b + io


def wan_bytes(s: FlashVSRShapes, px: int, tile_px: int, b: int, tiled: bool) -> tuple[int, int]:
    """(state, transient) of the Wan2.1 VAE decoder: every tile keeps its own causal caches;
    one tile decodes at a time; tiles blend into float32 accumulators (8 frames, 3 channels,
    and a weight plane)."""
    k = s.vae_dim / 96 * b / 2
    state = int(WAN_STATE_PER_PX * k * px)
    step = int(WAN_STEP_PER_PX * k * tile_px)
    if tiled:
        step += (3 * 4 * STEP_LATENTS + 1) * 4 * px
    return state, step


def act_per_token_dim(b: int) -> float:
    return ACT_FLOAT64 + ACT_PER_DTYPE_BYTE * b


# -- time ----------------------------------------------------------------------------------

def selected_keys(canvas: tuple[int, int], sparse_ratio: float, kv_ratio: float,
                  local_range: int) -> float:
    """Key tokens each query token attends to in steady state (LCSA: a global top-k of window
    pairs per head and query group, ``topk = P^2 * sparse_ratio * 768*1280 / (Hp*Wp)``, spread
    over the group's P windows, at most the local box over the G + 1 groups)."""
    hp, wp = canvas
    wins = (hp // 128) * (wp // 128)
    ratio = sparse_ratio * 768 * 1280 / (hp * wp)
    topk = max(1, int(wins * wins * ratio) - 1)
    local = min(local_range, hp // 128) * min(local_range, wp // 128)
    return WIN_TOKENS * min(topk / wins, local * (int(kv_ratio) + 1))


def flops_per_frame(s: FlashVSRShapes, canvas: tuple[int, int], variant: str, sparse_ratio: float,
                    kv_ratio: float, local_range: int) -> dict[str, float]:
    """FLOPs (2 per multiply-add) per output frame by op class, steady state."""
    hp, wp = canvas
    hw = (hp // 16) * (wp // 16)
    D, F = s.dim, s.ffn_dim
    tokens = hw / 4  # one latent frame = 4 output frames
    k_sel = selected_keys(canvas, sparse_ratio, kv_ratio, local_range)
    per_token = s.num_layers * (2 * (6 * D * D + 2 * D * F) + 4 * D * k_sel + 4 * D * s.prompt_tokens)
    c, h1, h2 = s.lq
    lq = (2 * c * 256 * 36 * h1 * 2 + 2 * h1 * 36 * h2 + 2 * h2 * D) * hw / 4
    out = {"dit_sparse": per_token * tokens, "conv2d": lq}
    px = hp * wp
    if variant == "full":
        out["conv3d_stream"] = WAN_FLOPS_PER_PX * (s.vae_dim / 96) ** 2 * px
    else:
        c0, c1, c2, c3 = s.tc
        a0 = px / 64  # per latent (4 frames): stage 0 once, 1 frame at 1/16, 2 at 1/4, 4 at 1
        mac = (a0 * (9 * (16 + s.tc_cond) * c0 + 9 * c0 * c0 + 3 * 36 * c0 * c0)
               + px / 16 * (c0 * c0 + 9 * c0 * c1 + 3 * 36 * c1 * c1)
               + px / 4 * (2 * c1 * c1 + 2 * (9 * c1 * c2 + 3 * 36 * c2 * c2))
               + px * (2 * 2 * c2 * c2 + 4 * (9 * c2 * c3 + 9 * c3 * c3 + 27 * c3)))
        out["conv2d"] += 2 * mac / 4
    return out


# -- the estimate ----------------------------------------------------------------------------

def estimate(s: FlashVSRShapes, canvas: tuple[int, int], *, dtype: str = "bf16",
             variant: str = "tiny", kv_ratio: float = 3.0, sparse_ratio: float = 2.0,
             local_range: int = 11, offload_blocks: int = 0, weights_dtype: str | None = None,
             vae_tiles: tuple[int, int] | None = None, gpu: bool = True,
             rates: dict[str, float] = H100_RATES) -> Estimate:
    """Peak GPU bytes, pinned host bytes and seconds per output frame of a FlashVSR stream on a
    padded canvas ``(Hp, Wp)`` (multiples of 128). ``gpu=False`` leaves out the GPU-only
    workspace term (a CPU run's memory is host memory)."""
    b = DTYPE_BYTES[dtype]
    hp, wp = canvas
    px = hp * wp
    hw = (hp // 16) * (wp // 16)
    g = 2 * hw
    D, layers = s.dim, s.num_layers
    G = max(1, int(kv_ratio))
    dit_w = dit_weights(s)
    w_gpu, w_host = placed_weights(dit_w, dtype, weights_dtype, offload_blocks)
    weights = w_gpu + (lq_params(s) + decoder_params(s, variant)) * b
    ctx = layers * 2 * s.prompt_tokens * D * b
    held = HELD_PER_PX_BF16 * b // 2 * px
    if variant == "full":
        tile_px = px
        if vae_tiles:
            t = vae_tiles[0]
            tile_px = min(t, hp) * min(t, wp)
        state, dec_step = wan_bytes(s, px, tile_px, b, bool(vae_tiles))
        workspace = WAN_WORKSPACE_PER_PX * tile_px * (s.vae_dim / 96) if gpu else 0
    else:
        state, dec_step = tc_bytes(s, px, b, STEP_LATENTS)
        workspace = 0
    kv_group = 2 * g * D * b  # K and V of one temporal group, one block
    kv0 = layers * min(STEP0_GROUPS, G + 1) * kv_group
    kv = layers * (G + 1) * kv_group
    act = act_per_token_dim(b) * D
    base = weights + ctx + held + state
    phases = {
        "step 0 DiT": base + kv0 + int(act * STEP0_GROUPS * g),
        "DiT": base + kv + (G + 1) * kv_group + int(act * g),
        "decoder": base + kv + dec_step + int(workspace),
    }
    phase = max(phases, key=phases.get)
    parts = {"weights": weights, "prompt K/V": ctx, "KV cache": kv if phase != "step 0 DiT" else kv0,
             "decoder state": state, "LQ frames": held,
             "step": phases[phase] - base - (kv if phase != "step 0 DiT" else kv0)}
    fl = flops_per_frame(s, canvas, variant, sparse_ratio, kv_ratio, local_range)
    seconds = sum(f / rates[k] for k, f in fl.items())
    if offload_blocks:
        dit_s_per_step = fl["dit_sparse"] / rates["dit_sparse"] * 4 * STEP_LATENTS
        seconds += swap_seconds(dit_w.block_bytes(dtype, weights_dtype), offload_blocks,
                                dit_s_per_step, 1 / (4 * STEP_LATENTS))
    return Estimate(phases[phase], w_host, seconds, parts, phase)


# -- from the files, into the plan -----------------------------------------------------------

def shapes_from_files(paths: dict, dit_file: str, lq_file: str, decoder_file: str,
                      full: bool) -> FlashVSRShapes:
    """Shapes read from the checkpoints' headers (safetensors) or memory-mapped pickles."""
    from ..engines.flashvsr.dit import DiTConfig
    from ..engines.flashvsr.wan_vae import WanVAEConfig
    from ..hub import load_shapes

    dit = DiTConfig.from_state_dict(load_shapes(paths[dit_file]))
    lsd = load_shapes(paths[lq_file])
    h1, c_in = lsd["conv1.weight"].shape[:2]
    lq = (c_in // 256, h1, lsd["conv2.weight"].shape[0])
    dsd = load_shapes(paths[decoder_file])
    if full:
        if dsd and all(k.startswith("model.") for k in dsd):
            dsd = {k[len("model."):]: v for k, v in dsd.items()}
        vcfg = WanVAEConfig.from_state_dict(dsd, decoder_file)
        n = sum(v.numel() for k, v in dsd.items() if k.startswith(("decoder.", "conv2.")))
        return FlashVSRShapes.from_configs(dit, lq, None, vae_params=n, vae_dim=vcfg.dim)
    w1 = dsd["decoder.1.weight"]  # (c0, latent + cond, 3, 3)
    tc = (w1.shape[0], dsd["decoder.10.weight"].shape[0], dsd["decoder.16.weight"].shape[0],
          dsd["decoder.22.weight"].shape[0])
    return FlashVSRShapes.from_configs(dit, lq, tc)


def fill(plan, shapes: FlashVSRShapes) -> None:
    """Predictions of an ``EnginePlan`` from its details (canvas, variant, knobs)."""
    from .common import apply, device_rates, knobs

    d = plan.details
    n_off, wdt = knobs(d)
    canvas = d["canvas"]
    tiles = d.get("tiles")  # DiT tiles (engines/tiles.py): tiles of up to tiles.tile input px
    if tiles:
        canvas = tuple(min(c, 4 * tiles.tile) for c in canvas)  # a tile's padded canvas
    est = estimate(shapes, canvas, dtype=plan.dtype, variant=d.get("variant", "tiny"),
                   kv_ratio=d.get("kv_ratio", 3.0), sparse_ratio=d.get("sparse_ratio", 2.0),
                   local_range=d.get("local_range", 11), offload_blocks=n_off, weights_dtype=wdt,
                   vae_tiles=d.get("vae_tiles"), gpu=plan.device.startswith("cuda"),
                   rates=device_rates(plan.device))
    if tiles:
        tiled(est, len(tiles.tiles), plan.in_size, parked=d.get("tile_state") == "host")
    apply(plan, est)


def tiled(est: Estimate, n_tiles: int, in_size: tuple[int, int], parked: bool,
          link_bytes_per_s: float = 45.5e9) -> None:
    """One tile's estimate -> the tiled stream's (in place). The tiles step one after the other,
    so one tile's step transient is live at a time, but every tile keeps its streaming state
    (KV cache, decoder state, LQ frames) from step to step (an upper bound: the tile's
    peak-phase state, for all of them). Kept on the GPU, the other tiles' states add to the
    peak; ``parked`` on the host, they are pinned host memory and every step copies each tile's
    state in and out (8 frames per step; the pinned link rate of ``common.swap_seconds``). The
    blended canvas holds a step 0's 21 frames of 4H x 4W x 3 float32 accumulators. Time: every
    tile runs every step."""
    state = est.parts["KV cache"] + est.parts["decoder state"] + est.parts["LQ frames"]
    others = (n_tiles - 1) * state
    canvas = 21 * 3 * 4 * (4 * in_size[0]) * (4 * in_size[1])
    est.parts["tile canvas"] = canvas
    est.gpu_bytes += canvas
    est.seconds_per_frame *= n_tiles
    if parked:
        est.host_bytes += others + state
        est.seconds_per_frame += 2 * n_tiles * state / link_bytes_per_s / 8
    else:
        est.parts["other tiles' state"] = others
        est.gpu_bytes += others
