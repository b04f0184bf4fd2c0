"""SeedVR2 (3B, 7B) as a vsrkit engine: one-step diffusion restoration at any output size.

Per temporal batch (``batches.py``), as the official ``projects/inference_seedvr2_*.py``:
frames -> PIL-style antialiased bicubic resize to the output size (float) -> clamp -> fit to
multiples of 16 (``--fit pad``: replicate-pad bottom/right and crop back, the default; ``--fit
crop``: the official centre crop) -> [-1, 1] -> last frame repeated to 4n+1 -> VAE encode, a
posterior *sample* -> x 0.9152 -> DiT(noise | latent | 1) at t = 1000 -> x0 = noise - v -> VAE
decode -> cut to the batch's frames -> colour fix against the resized input -> clip.

Temporal context across batches: the DiT attends within one batch only (its windows span at
most the batch's latents) and the causal VAE starts each batch with a one-frame latent, the
layout the model was trained on; so a batch's context is its overlap with the previous batch
(``--temporal-overlap`` frames it re-reads), and the overlap's outputs are blended with a linear
ramp. Carrying the VAE's conv memory into the next batch would hand the DiT a continuation
latent where it expects a first frame. Segments (resume, ``--devices``) warm up one batch and
start on the batch grid (``frame_align`` = stride), so they reproduce the unbroken run exactly.

Noise follows ``vsrkit.noise`` over the whole video's latent timeline: initial noise
``seed + t``, augmentation ``seed + 1_000_000 + t``, VAE posterior ``seed + 2_000_000 + t``, with
``t`` counted from the batch's first frame (``batches.latent_start``).
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn.functional as F

from ... import hub
from ...compiled import set_compiled
from ...memory import Fallbacks, OOMGuard, plain_call, retry_on_oom
from ...placement import offload_relief, on_host, place, quantize_blocks, weight_settings
from ...devices import dtype_name, pick_device, pick_dtype
from ...errors import UsageError
from ...estimate import seedvr2 as estimate
from ...noise import AUGMENT_OFFSET, POSTERIOR_OFFSET, latent_noise
from ...ops.attention import pick_varlen
from ...ops.color import METHODS as COLOR_METHODS
from ...ops.color import color_fix
from ...ops.resize import resize
from ...plan import output_size
from ..base import Engine, EnginePlan, EngineSession
from . import batches
from . import weights as W
from .config import infer_dit_config, infer_vae_config
from .dit import Layout, NaDiT, make_layout
from .vae import VideoVAE

MULTIPLE = 16  # output pixels: 8x VAE, 2x2 patch
DEFAULT_BATCH = 33  # frames per temporal batch (4n+1) when --batch-frames is not given
DEFAULT_OVERLAP = 4
DEFAULT_VAE_TILE, DEFAULT_VAE_OVERLAP = 512, 64  # output pixels
AUTO_TILE_PIXELS = 1_000_000  # canvas area above which the VAE runs in tiles on CUDA
INPUT_NOISE_OFFSET = 3_000_000  # --input-noise-scale: pixel noise of frame f, seed + this + f
INPUT_NOISE_AMPLITUDE = 0.025  # numz: x*(1-s/2) + (x + 0.05*n)*s/2 = x + 0.025*s*n


class SeedVR2Engine(Engine):
    native_scale = 1  # restores at the input size unless --scale/--resolution say otherwise

    def __init__(self, model_id: str, opts, size: str, sharp: bool = False, vae_groups: int = 32):
        if opts.variant not in (None, "sharp"):
            raise UsageError(f"--variant {opts.variant!r}: SeedVR2 offers sharp (7b only)")
        self.name, self.size, self.vae_groups = model_id, size, vae_groups
        self.sharp = sharp or opts.variant == "sharp"
        if self.sharp and size != "7b":
            raise UsageError("--variant sharp exists for seedvr2-7b only")
        self.weights_dir, self.vae_path = opts.weights, opts.vae
        self.models = None  # ((device, dtype), (dit, vae, txt)) kept across streams

    def weight_files(self) -> list:
        dit = W.pick(W.dit_candidates(self.size, self.sharp), self.name, self.weights_dir)
        vae = W.pick(W.vae_candidates(self.size), self.name, self.weights_dir, self.vae_path)
        return [dit, vae, hub.WeightFile(W.TEXT_FILE, url=W.POS_EMB_URL)]

    def _resolve(self):
        files = self.weight_files()
        return files, hub.resolve(files, model_id=self.name, weights_dir=self.weights_dir,
                                  overrides={files[1].name: self.vae_path})

    def plan(self, spec, opts) -> EnginePlan:
        if opts.tile_size is not None:
            raise UsageError("--tile-size (DiT tiles) is not available for SeedVR2; use "
                             "--tiled-vae for memory, the DiT attends in windows already")
        for name in ("input_noise_scale", "latent_noise_scale"):
            if not 0.0 <= getattr(opts, name) <= 1.0:
                raise UsageError(f"--{name.replace('_', '-')} {getattr(opts, name)}: must be "
                                 "in [0, 1]")
        fix = "lab" if opts.color_fix == "auto" else opts.color_fix
        if fix not in COLOR_METHODS:
            raise UsageError(f"--color-fix {fix}: available: {', '.join(COLOR_METHODS)}")
        device = pick_device(opts.device)
        self._resolve()  # a missing file is one clear line, before any heavy work
        size = output_size(spec.height, spec.width, opts, self.native_scale)
        rh, rw = size.out_h, size.out_w  # the resize target
        if opts.fit == "crop":
            oh, ow = rh - rh % MULTIPLE, rw - rw % MULTIPLE
            if oh == 0 or ow == 0:
                raise UsageError(f"--fit crop: {rw}x{rh} is smaller than {MULTIPLE} px")
            canvas = (oh, ow)
        else:
            oh, ow = rh, rw
            canvas = (-(-rh // MULTIPLE) * MULTIPLE, -(-rw // MULTIPLE) * MULTIPLE)
        length = opts.batch_frames or DEFAULT_BATCH
        overlap = opts.temporal_overlap if opts.temporal_overlap is not None else \
            min(DEFAULT_OVERLAP, length - 1)
        if overlap >= length:
            raise UsageError(f"--temporal-overlap {overlap}: must be < --batch-frames ({length})")
        dtype = pick_dtype(opts.dtype, device)
        attention = pick_varlen(opts.attention, device, dtype)
        notes = []
        if canvas != (oh, ow):
            notes.append(f"canvas padded to {canvas[1]}x{canvas[0]} (multiples of {MULTIPLE}), "
                         "cropped back")
        if (oh, ow) != (rh, rw):
            notes.append(f"--fit crop: centre crop of the {rw}x{rh} resize to {ow}x{oh}")
        tile = opts.vae_tile_size or DEFAULT_VAE_TILE
        tile_ov = opts.vae_tile_overlap if opts.vae_tile_overlap is not None else DEFAULT_VAE_OVERLAP
        stride = length - overlap
        tiled = opts.tiled_vae
        if not tiled and device.type == "cuda" and canvas[0] * canvas[1] > AUTO_TILE_PIXELS:
            tiled = True  # the untiled VAE needs > 60 GiB at 1080p (measured on the H100)
            notes.append(f"VAE in {tile}px tiles (auto above {AUTO_TILE_PIXELS / 1e6:.1f} MP)")
        placed, placed_notes = weight_settings(opts, device, dtype,
                                               self._shapes().dit.num_layers)
        notes += placed_notes
        plan = EnginePlan(
            self.name, (spec.height, spec.width), (oh, ow), str(device), dtype_name(dtype),
            details={"resize": (rh, rw), "fit": opts.fit, "canvas": canvas, "seed": opts.seed,
                     "batch_frames": length, "temporal_overlap": overlap, "color_fix": fix,
                     "attention": attention, "input_noise_scale": opts.input_noise_scale,
                     "latent_noise_scale": opts.latent_noise_scale,
                     "vae_tiles": (tile, tile_ov) if tiled else None, "compile": opts.compile,
                     **placed},
            notes=notes, latency_frames=length, warmup_frames=length, lookahead_frames=length,
            frame_align=stride)
        estimate.fill(plan, self._shapes())
        return plan

    def _shapes(self) -> estimate.SeedVR2Shapes:
        """Model sizes from the files' headers, for the memory/time prediction."""
        if getattr(self, "shapes", None) is None:
            files, paths = self._resolve()
            dname, vname = files[0].name, files[1].name
            self.shapes = estimate.SeedVR2Shapes(
                infer_dit_config(hub.load_shapes(paths[dname]), dname),
                infer_vae_config(hub.load_shapes(paths[vname]), self.vae_groups, vname))
        return self.shapes

    def load(self, device: torch.device, dtype: torch.dtype, weights_dtype: str | None = None,
             offload_blocks: int = 0):
        key = (device, dtype, weights_dtype, offload_blocks)
        # a run out of memory may have moved more blocks to the host (OOMGuard)
        if self.models is not None and self.models[0] == key and \
                on_host(self.models[1][0]) == offload_blocks:
            return self.models[1]
        self.models = None
        files, paths = self._resolve()
        dname, vname = files[0].name, files[1].name
        sd = hub.load_state_dict(paths[dname])
        cfg = infer_dit_config(sd, dname)
        W.check_rope(sd, cfg.rope_freqs, dname)
        with torch.device("meta"):
            dit = NaDiT(cfg).to(dtype)
        quantize_blocks(dit.blocks, weights_dtype, dtype)
        W.load_into(dit, sd, dname, "SeedVR2 DiT")
        del sd
        vsd = hub.load_state_dict(paths[vname])
        vcfg = infer_vae_config(vsd, self.vae_groups, vname)
        with torch.device("meta"):
            vae = VideoVAE(vcfg).to(dtype)
        W.load_into(vae, vsd, vname, "SeedVR2 VAE", allow_unexpected=True)
        del vsd
        dit.swap = place(dit, dit.blocks, device, offload_blocks)  # host blocks stay there
        dit, vae = dit.eval(), vae.to(device).eval()
        with torch.no_grad():
            txt = dit.embed_text(W.load_text(paths[W.TEXT_FILE]).to(device, dtype))
        self.models = (key, (dit, vae, txt))
        return self.models[1]

    def open(self, plan: EnginePlan) -> EngineSession:
        device = torch.device(plan.device)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[plan.dtype]
        d = plan.details
        loaded = self.load(device, dtype, d.get("weights_dtype"), d.get("offload_blocks", 0))
        set_compiled(loaded[0].blocks, d.get("compile", False))
        return SeedVR2Session(plan, loaded, device, dtype)

    def close(self) -> None:
        self.models = None


class SeedVR2Session(EngineSession):
    def __init__(self, plan: EnginePlan, loaded, device, dtype):
        self.dit, self.vae, self.txt = loaded
        self.dit.set_attention(plan.details["attention"])
        # out of memory in a DiT block: that block again, with more blocks in host memory (the
        # VAE's out of memory reruns the batch with smaller tiles: self.fallbacks)
        self.dit.guard = OOMGuard(
            lambda: offload_relief(self.dit, self.dit.blocks, self.device), self.say)
        self.plan, self.device, self.dtype = plan, device, dtype
        d = plan.details
        self.length, self.overlap = d["batch_frames"], d["temporal_overlap"]
        self.stride = self.length - self.overlap
        self.frames: list[torch.Tensor] = []  # input frames from index self.base
        self.base = 0
        self.received = 0
        self.k = 0  # next regular batch
        self.covered = 0  # frames [0, covered) have an output
        self.pending: dict[int, torch.Tensor] = {}  # outputs not yet returned, (H, W, 3)
        self.emitted = 0
        self.layouts: dict[tuple, Layout] = {}
        # out of GPU memory in a batch: that batch again with smaller VAE tiles (sticky)
        self.fallbacks = Fallbacks(vae_fallbacks(d["vae_tiles"], d["canvas"]), self.say,
                                   describe=describe_vae_tiles)

    # -- the stream --------------------------------------------------------------------------
    def push(self, frames: torch.Tensor) -> Iterator[torch.Tensor]:
        assert frames.ndim == 4 and frames.shape[-1] == 3, f"expected (T,H,W,3), {frames.shape=}"
        self.frames.extend(frames.unbind(0))
        self.received += frames.shape[0]
        while self.k * self.stride + self.length <= self.received:
            s = self.k * self.stride
            self._run(s, s + self.length)
            self.k += 1
        # a later batch starts at the next regular start, or (the final one) at >= received - L
        yield from self._emit(min(self.k * self.stride, self.received - self.length))

    def flush(self) -> Iterator[torch.Tensor]:
        if self.covered < self.received:
            self._run(batches.final_start(self.received, self.length), self.received)
        yield from self._emit(self.received)

    def close(self) -> None:
        self.dit.guard = plain_call
        self.frames, self.pending = [], {}

    def _emit(self, upto: int) -> Iterator[torch.Tensor]:
        upto = min(upto, self.covered)
        if upto > self.emitted:
            out = torch.stack([self.pending.pop(i) for i in range(self.emitted, upto)])
            self.emitted = upto
            yield out
        keep = max(0, min(self.k * self.stride, self.received - self.length))
        if keep > self.base:  # input frames no later batch reads
            del self.frames[:keep - self.base]
            self.base = keep

    def _run(self, s: int, e: int) -> None:
        x = torch.stack(self.frames[s - self.base:e - self.base])

        def attempt(tiles):  # a batch is a pure function of its frames: safe to run again
            self.plan.details["vae_tiles"] = tiles
            return restore(self, x, self.plan.start_frame + s)

        y = retry_on_oom(attempt, self.fallbacks)  # (n, 3, H, W) in [-1, 1], unclipped
        y = (y.clamp(-1, 1) * 0.5 + 0.5).permute(0, 2, 3, 1)  # (n, H, W, 3) in [0, 1]
        n_ov = max(0, self.covered - s)
        for i in range(e - s):
            f = s + i
            if i < n_ov and f in self.pending:  # blend into the earlier batch's output
                w = (i + 1) / (n_ov + 1)
                self.pending[f] = self.pending[f] * (1 - w) + y[i] * w
            else:
                self.pending[f] = y[i]
        self.covered = max(self.covered, e)


def vae_fallbacks(tiles: tuple[int, int] | None, canvas: tuple[int, int]) -> list:
    """The plan's VAE tiles, then tiles 3/4 as long each time (multiples of 16, overlap 1/8,
    at least 32 px): the VAE's activations are the peak of a SeedVR2 batch."""
    out = [tiles]
    t = tiles[0] if tiles else max(canvas)
    while True:
        t = int(t * 0.75) // 16 * 16
        if t < 32:
            return out
        out.append((t, max(8, t // 8 // 8 * 8)))


def describe_vae_tiles(tiles) -> str:
    return f"VAE tiles of {tiles[0]} px" if tiles else "the untiled VAE"


@torch.no_grad()
def restore(sess: SeedVR2Session, frames: torch.Tensor, first: int) -> torch.Tensor:
    """(n, H, W, 3) uint8/uint16 host frames, the first at absolute index ``first`` ->
    (n, 3, H_out, W_out) float32 in [-1, 1] before clipping (after the colour fix)."""
    d, dev, dt = sess.plan.details, sess.device, sess.dtype
    dit, vae = sess.dit, sess.vae
    cfg = vae.cfg
    n = frames.shape[0]
    peak = 65535.0 if frames.dtype == torch.uint16 else 255.0
    # 1. Resize (float, PIL bicubic, antialiased), clamp, fit to the 16-px grid
    x = frames.to(dev).permute(0, 3, 1, 2).float() / peak  # (n, 3, H, W)
    x = resize(x, d["resize"]).clamp(0, 1)
    (rh, rw), (oh, ow), (ch, cw) = d["resize"], sess.plan.out_size, d["canvas"]
    if d["fit"] == "crop":  # torchvision center_crop offsets
        top, left = int(round((rh - oh) / 2)), int(round((rw - ow) / 2))
        x = x[..., top:top + oh, left:left + ow]
    ref = x * 2 - 1  # the colour reference, (n, 3, oh, ow)
    x = F.pad(ref, (0, cw - ow, 0, ch - oh), mode="replicate") if (ch, cw) != (oh, ow) else ref
    # 2. Repeat the last frame to 4n+1; encode (a posterior sample, pinned eps)
    t_pad = batches.pad_4n1(n)
    if t_pad > n:
        x = torch.cat([x, x[-1:].expand(t_pad - n, -1, -1, -1)])
    if d["input_noise_scale"] > 0:  # as the node: on the padded canvas and padding frames
        noise = torch.stack([torch.randn((3, ch, cw), generator=torch.Generator().manual_seed(
            d["seed"] + INPUT_NOISE_OFFSET + first + i)) for i in range(t_pad)]).to(dev)
        x = x + INPUT_NOISE_AMPLITUDE * d["input_noise_scale"] * noise
    vid = x.transpose(0, 1)[None].to(dt)  # (1, 3, T, ch, cw)
    tiles = d["vae_tiles"]
    if tiles:
        h = vae.tiled(lambda v: vae.encode_moments(v, 1), vid, 1 / cfg.spatial_factor,
                      tiles[0], tiles[1], cfg.spatial_factor)
    else:
        h = vae.encode_moments(vid, 1)
    mean, logvar = h.float().chunk(2, dim=1)  # (1, 16, t, h, w)
    t_lat, hl, wl = mean.shape[2:]
    l0 = batches.latent_start(first)
    lat_shape = (cfg.latent_channels, hl, wl)
    eps = latent_noise(d["seed"], range(l0, l0 + t_lat), lat_shape, offset=POSTERIOR_OFFSET, device=dev)
    z = mean + torch.exp(0.5 * logvar.clamp(-30, 20)) * eps.transpose(0, 1)[None]
    cond = ((z[0] - cfg.shift) * cfg.scaling).permute(1, 2, 3, 0)  # (t, h, w, 16)
    # 3. One Euler step from t = 1000: x0 = noise - v
    noise = latent_noise(d["seed"], range(l0, l0 + t_lat), lat_shape, device=dev).permute(0, 2, 3, 1)
    if d["latent_noise_scale"] > 0:
        # the community node: aug = 0.1 * noise + 0.05 * fresh noise, mixed into the condition
        # by the lerp schedule at the shifted time 1000 * scale (official: aug = fresh noise,
        # scale fixed at 0)
        fresh = latent_noise(d["seed"], range(l0, l0 + t_lat), lat_shape, offset=AUGMENT_OFFSET,
                             device=dev).permute(0, 2, 3, 1)
        aug = noise * 0.1 + fresh * 0.05
        tt = condition_time(d["latent_noise_scale"], cond.shape, cfg) / 1000.0
        cond = (1 - tt) * cond + tt * aug
    inp = torch.cat([noise, cond, torch.ones_like(cond[..., :1])], -1).to(dt)
    grid = (t_lat, hl // 2, wl // 2)
    if grid not in sess.layouts:
        sess.layouts[grid] = make_layout(dit.c, grid, sess.txt.shape[0], dev)
    v = dit(inp, sess.txt, 1000.0, sess.layouts[grid])
    x0 = noise - v.float()
    # 4. Decode, cut to the batch's frames and the output size, colour fix
    zz = (x0 / cfg.scaling + cfg.shift).permute(3, 0, 1, 2)[None].to(dt)  # (1, 16, t, h, w)
    if tiles:
        out = vae.tiled(lambda z_: vae.decode(z_, 1), zz, cfg.spatial_factor,
                        tiles[0] // cfg.spatial_factor, tiles[1] // cfg.spatial_factor, 1)
    else:
        out = vae.decode(zz, 1)
    out = out[0, :, :n, :oh, :ow].transpose(0, 1).float()  # (n, 3, oh, ow)
    return color_fix(out, ref, d["color_fix"])


def condition_time(scale: float, shape, cfg) -> float:
    """The official ``timestep_transform`` of the condition noise time ``1000 * scale``. It is
    given the latent's ``shape[1:]`` = (h, w, c) where it expects (t, h, w), as the official
    script and the ComfyUI node do; kept, so results match theirs."""
    f, hh, ww = shape[1], shape[2], shape[3]
    frames, heights, widths = (f - 1) * cfg.temporal_factor + 1, hh * cfg.spatial_factor, ww * cfg.spatial_factor
    lin = lambda x1, y1, x2, y2: (lambda x: (y2 - y1) / (x2 - x1) * x + y1 - (y2 - y1) / (x2 - x1) * x1)  # noqa: E731
    if frames > 1:
        shift = lin(256 * 256 * 37, 1.0, 1280 * 720 * 145, 5.0)(heights * widths * frames)
    else:
        shift = lin(256 * 256, 1.0, 1024 * 1024, 3.2)(heights * widths)
    t = scale
    return 1000.0 * shift * t / (1 + (shift - 1) * t)
