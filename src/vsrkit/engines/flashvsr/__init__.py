"""FlashVSR (v1, v1.1; Tiny, Tiny-Long and Full) as a streaming vsrkit engine.

Frames leave as soon as they are final: step 0 needs 25 LQ frames and emits 21, every later step
reads 8 more and emits 8 (the model looks 4 frames ahead). At the end of the stream the input is
padded with copies of its last frame to the model's frame grid and the output trimmed, so N frames
in give exactly N frames out for any N (the official scripts drop up to 7 frames and need N >= 21).
Sizes are padded to 128-px multiples at 4x (replicate) and cropped back: no content is cut.

The variants share the DiT, the LQ projector and the schedule and differ in the decoder that turns
a step's latents into frames: Tiny and Tiny-Long the TCDecoder (which also reads the LQ frames),
Full the Wan2.1 VAE (``wan_vae.py``, streamed one latent at a time). Both follow one interface
(``decoder.py``), so step 0 gives 21 frames and every later step 8 with either.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F

from ... import hub
from ...compiled import set_compiled
from ...memory import OOMGuard, plain_call
from ...placement import offload_relief, on_host, place, quantize_blocks, weight_settings
from ...devices import pick_device, pick_dtype
from ...errors import WeightsError
from ...estimate import flashvsr as estimate
from ...noise import latent_noise
from ...offload import ParkedWeights, move_tensors
from ...plan import output_size
from ...tiling import pad_to_multiple
from ...ops.color import METHODS as COLOR_METHODS
from ...ops.color import color_fix
from ...ops.resize import resize_u8
from ..base import Engine, EnginePlan, EngineSession
from ..tiles import plan_tiles, tile_options
from ..classical import resample_matrix
from ...ops.attention import pick_attention
from .dit import DiTConfig, WanDiT
from .lcsa import local_mask
from .lq_proj import LQProjector
from .decoder import FrameDecoder
from .tcdecoder import TCDecoder
from .tiled import TILE_MULTIPLE, open_tiled
from .wan_vae import DEFAULT_OVERLAP as VAE_OVERLAP
from .wan_vae import DEFAULT_TILE as VAE_TILE
from .wan_vae import VAEStream, WanVAE, load_wan_vae

MULTIPLE = 128  # output pixels: LCSA windows are 8x8 patches of 16 px
REPOS = {"v1.1": "JunhaoZhuang/FlashVSR-v1.1", "v1": "JunhaoZhuang/FlashVSR"}
PROMPT_URL = ("https://raw.githubusercontent.com/OpenImagingLab/FlashVSR/main/examples/WanVSR/"
              "prompt_tensor/posi_prompt.pth")
FILES = ("diffusion_pytorch_model_streaming_dmd.safetensors", "LQ_proj_in.ckpt", "TCDecoder.ckpt")
VAE_FILE = "Wan2.1_VAE.pth"  # Full only: fetched and read only when --variant full runs
VARIANTS = ("tiny", "tiny-long", "full")
FIRST_STEP_IN, FIRST_STEP_OUT, STEP = 25, 21, 8


def upsample_pil_u8(frames: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(T, H, W, 3) uint8/uint16 -> (T, 3, H', W') float in [-1, 1]: the official script's
    ``PIL.Image.resize(BICUBIC)`` on 8-bit frames, bit for bit (``ops.resize.resize_u8``)."""
    if frames.dtype != torch.uint8:  # PIL sees 8-bit frames
        frames = ((frames.to(torch.int32) + 128) // 257).clamp(0, 255).to(torch.uint8)
    x = resize_u8(frames, size).permute(0, 3, 1, 2)
    return x.float() / 255.0 * 2.0 - 1.0  # in float32, as the official script


class FlashVSREngine(Engine):
    native_scale = 4

    def __init__(self, model_id: str, opts, version: str):
        self.name = model_id
        self.version = version
        self.variant = opts.variant or "tiny"
        if self.variant not in VARIANTS:
            from ...errors import UsageError

            raise UsageError(f"--variant {self.variant!r}: FlashVSR offers {', '.join(VARIANTS)}")
        self.full = self.variant == "full"
        self.weights_dir, self.vae_path = opts.weights, opts.vae
        self.models = None

    def weight_files(self) -> list:
        repo = REPOS[self.version]
        decoder = VAE_FILE if self.full else FILES[2]
        return [hub.WeightFile(f, repo) for f in (*FILES[:2], decoder)] + \
            [hub.WeightFile("posi_prompt.pth", url=PROMPT_URL)]

    def _resolve(self) -> dict:
        """Local paths of this variant's files; ``--vae PATH`` stands in for the VAE."""
        return hub.resolve(self.weight_files(), model_id=self.name, weights_dir=self.weights_dir,
                           overrides={VAE_FILE: self.vae_path} if self.full else None,
                           download_flags=" --variant full" if self.full else "")

    def plan(self, spec, opts) -> EnginePlan:
        # options this engine does not implement yet fail here, never silently
        from ...errors import UsageError

        if opts.fit == "crop":
            raise UsageError("--fit crop is not available for FlashVSR yet")
        tile_options(opts, TILE_MULTIPLE)  # checked here; the grid is planned below
        vae_tiles = self._vae_tiles(opts)
        fix = "adain" if opts.color_fix == "auto" else opts.color_fix
        if fix not in COLOR_METHODS:
            raise UsageError(f"--color-fix {fix}: FlashVSR offers {', '.join(COLOR_METHODS)}")
        # weights are checked here, before any heavy work: a missing file is one clear line
        self._resolve()
        size = output_size(spec.height, spec.width, opts, self.native_scale)
        device = pick_device(opts.device)
        dtype = pick_dtype(opts.dtype, device)
        h4, w4 = spec.height * 4, spec.width * 4
        ph, pw = pad_to_multiple(h4, w4, MULTIPLE)
        notes = []
        if (ph or pw):
            notes.append(f"canvas padded to {w4 + pw}x{h4 + ph} (multiples of {MULTIPLE}), "
                         "cropped back")
        if (size.out_h, size.out_w) != (h4, w4):
            notes.append(f"the 4x result is resized to {size.out_w}x{size.out_h}")
        if opts.compile:
            notes.append("DiT blocks compiled (the first steps wait for the compiler; cached on "
                         "disk for later runs)")
        if vae_tiles:
            notes.append(f"VAE in {vae_tiles[0]}px tiles overlapping by {vae_tiles[1]}px")
        unload = opts.unload_dit and device.type != "cpu"
        if opts.unload_dit and not unload:
            notes.append("--unload-dit: nothing to do on the CPU (the weights are in host memory)")
        placed, placed_notes = weight_settings(opts, device, dtype, self._shapes().num_layers)
        notes += placed_notes
        plan = EnginePlan(self.name, (spec.height, spec.width), (size.out_h, size.out_w),
                          str(device), {torch.float32: "fp32", torch.bfloat16: "bf16",
                                        torch.float16: "fp16"}[dtype],
                          details={"variant": self.variant, "canvas": (h4 + ph, w4 + pw),
                                   "sparse_ratio": opts.sparse_ratio, "kv_ratio": opts.kv_ratio,
                                   "local_range": opts.local_range, "seed": opts.seed,
                                   "attention": pick_attention(opts.attention, device),
                                   "color_fix": "adain" if opts.color_fix == "auto" else opts.color_fix,
                                   "vae_tiles": vae_tiles, "unload_dit": unload,
                                   "compile": opts.compile, **placed},
                          notes=notes, latency_frames=FIRST_STEP_IN,
                          # 24 frames rebuild the 3 cached latent groups; output frame i comes
                          # from the step that reads LQ frames up to i + 12
                          warmup_frames=48, lookahead_frames=12, frame_align=8)
        plan_tiles(plan, opts, TILE_MULTIPLE)  # --tile-size: the grid into details and notes
        estimate.fill(plan, self._shapes())
        return plan

    def _shapes(self):
        """Model sizes from the files' headers, for the memory/time prediction."""
        if getattr(self, "shapes", None) is None:
            self.shapes = estimate.shapes_from_files(
                self._resolve(), FILES[0], FILES[1], VAE_FILE if self.full else FILES[2], self.full)
        return self.shapes

    def _vae_tiles(self, opts) -> tuple[int, int] | None:
        """(tile, overlap) in output pixels for --tiled-vae, checked before any work."""
        from ...errors import UsageError

        if self.vae_path and not self.full:
            raise UsageError("--vae is the Wan2.1 VAE of --variant full; "
                             f"--variant {self.variant} decodes with the TCDecoder")
        if not opts.tiled_vae:
            return None
        if not self.full:
            raise UsageError(f"--tiled-vae tiles the Wan2.1 VAE of --variant full; --variant "
                             f"{self.variant} decodes with the TCDecoder, which needs no tiles")
        tile = opts.vae_tile_size or VAE_TILE
        overlap = opts.vae_tile_overlap if opts.vae_tile_overlap is not None else VAE_OVERLAP
        if tile < 64 or overlap >= tile:
            raise UsageError(f"--vae-tile-size {tile} / --vae-tile-overlap {overlap}: "
                             "need tile >= 64 and overlap < tile (output pixels)")
        return tile, overlap

    def _load(self, device, dtype, weights_dtype=None, offload_blocks=0):
        key = (device, dtype, weights_dtype, offload_blocks)
        # a run out of memory may have moved more blocks to the host (FlashVSRSession._relieve)
        if self.models is not None and self.models[0] == key and \
                on_host(self.models[1][0][0]) == offload_blocks:
            return self.models[1]
        self.models = None  # the previous copy goes before the next is built
        paths = self._resolve()
        sd = hub.load_state_dict(paths[FILES[0]])
        try:
            # built on the meta device and given the checkpoint's tensors (assign): a default
            # initialisation of 1.3B parameters on the host cost most of a minute per load
            with torch.device("meta"):
                dit = WanDiT(DiTConfig.from_state_dict(sd))
            quantize_blocks(dit.blocks, weights_dtype, dtype)
            _strict(dit, sd, FILES[0])
            lsd = hub.load_state_dict(paths[FILES[1]])
            with torch.device("meta"):
                lq = LQProjector.from_state_dict(lsd, causal=self.version == "v1.1")
            _strict(lq, lsd, FILES[1])
            if self.full:
                decoder = load_wan_vae(hub.load_state_dict(paths[VAE_FILE]), paths[VAE_FILE].name)
            else:
                tsd = hub.load_state_dict(paths[FILES[2]])
                with torch.device("meta"):
                    decoder = TCDecoder.from_state_dict(tsd)
                _strict(decoder, tsd, FILES[2])
        except KeyError as e:
            raise WeightsError(f"{FILES[0]}: not a FlashVSR checkpoint (missing {e})") from None
        prompt = hub.load_state_dict(paths["posi_prompt.pth"])
        prompt = next(iter(prompt.values())) if isinstance(prompt, dict) else prompt
        loaded = prepare(dit, lq, decoder, prompt, device, dtype, offload_blocks)
        self.models = (key, loaded)
        return loaded

    def open(self, plan: EnginePlan) -> EngineSession:
        device = torch.device(plan.device)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[plan.dtype]
        d = plan.details
        loaded = self._load(device, dtype, d.get("weights_dtype"), d.get("offload_blocks", 0))
        set_compiled(loaded[0][0].blocks, d.get("compile", False))
        if plan.details.get("tiles"):
            return open_tiled(plan, loaded, device, dtype, FlashVSRSession)
        return FlashVSRSession(plan, loaded, device, dtype)

    def close(self) -> None:
        self.models = None


@torch.no_grad()
def prepare(dit, lq, decoder, prompt, device, dtype, offload_blocks: int = 0):
    """Modules on the device (the last ``offload_blocks`` DiT blocks in host memory, streamed
    in: ``placement.place``), and what every step reuses: the prompt's cross-attention K/V per
    block (the prompt is fixed, so it is embedded once) and the timestep embeddings.
    ``decoder``: a TCDecoder (tiny, tiny-long) or a WanVAE (full)."""
    dit = dit.to(dtype).eval()  # cast where it is (host): the host blocks never visit the GPU
    # the prompt's K/V before the blocks are placed: kv() is not a block's forward, so a block
    # kept on the host would not be streamed in for it (BlockSwap hooks the forward); only the
    # host blocks' projections go back (place() leaves what is on the device there)
    dit.text_embedding.to(device)
    ctx = dit.text_embedding(prompt.to(device, dtype).reshape(-1, prompt.shape[-1]))
    resident = len(dit.blocks) - offload_blocks
    ctx_kv = []
    for i, b in enumerate(dit.blocks):
        with _on(b.cross_attn, device, back=i >= resident):
            ctx_kv.append(b.cross_attn.kv(ctx))
    dit.swap = place(dit, dit.blocks, device, offload_blocks)
    mods = [dit] + [m.to(device=device, dtype=dtype).eval() for m in (lq, decoder)]
    if device.type == "cuda" and isinstance(decoder, TCDecoder):
        # cuDNN's bf16 convolutions run NHWC: in NCHW every conv of the frame-by-frame decoder
        # pays a layout conversion each way (11 % of GPU time at 1408x768); NHWC weights make
        # its activations NHWC throughout (decoder time 0.49 -> 0.37 s per 61 frames, H100).
        # cuDNN autotuning (cudnn.benchmark) is left off: it bought nothing on top of this and
        # picks algorithms by timing, so two processes (segments on two GPUs, a resumed run)
        # could compute different bits for the same frames.
        mods[2] = mods[2].to(memory_format=torch.channels_last)
    t, t_mod = mods[0].timestep(dtype, device)
    return mods, ctx_kv, t, t_mod


@contextmanager
def _on(module: torch.nn.Module, device: torch.device, back: bool):
    """``module`` on ``device`` for the block, then (``back``) where it was."""
    home = next(module.parameters()).device
    module.to(device)
    try:
        yield module
    finally:
        if back:
            module.to(home)


def _strict(module, sd, name: str) -> None:
    # FP8 linears (--weights-dtype fp8) compute their scales from the checkpoint's weights
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()
                if not (k.endswith(".weight_scale") and k not in sd)}
    hub.check_keys(sd, expected, name, what="FlashVSR checkpoint")
    module.load_state_dict(sd, strict=True, assign=True)
    left = [n for n, t in [*module.named_parameters(), *module.named_buffers()] if t.is_meta]
    if left:  # a tensor the checkpoint does not hold (non-persistent buffer): never left empty
        raise WeightsError(f"{name}: no values for {', '.join(left[:5])}")


class FlashVSRSession(EngineSession):
    def __init__(self, plan: EnginePlan, loaded, device, dtype):
        (self.dit, self.lq, decoder), self.ctx_kv, self.t, self.t_mod = loaded
        self.dit.set_attention(plan.details["attention"])
        self.lq.reset()
        self.decoder: FrameDecoder = (VAEStream(decoder, plan.details.get("vae_tiles"))
                                      if isinstance(decoder, WanVAE) else decoder)
        self.decoder.reset()
        # --unload-dit: the DiT's weights wait in host memory while the decoder runs
        # (with DiT tiles, each tile's step copies it in again: N copies per step for N tiles)
        self.parked = ParkedWeights.of(self.dit, device) if plan.details.get("unload_dit") else None
        self.plan, self.device, self.dtype = plan, device, dtype
        # out of memory inside a step: the failed block or layer runs again once more DiT
        # blocks wait in host memory (a step cannot be rerun: its state is replaced as it goes)
        guard = OOMGuard(self._relieve, self.say)
        self.dit.guard = self.lq.guard = guard
        if isinstance(decoder, TCDecoder):
            decoder.guard = guard
        d = plan.details
        (self.H, self.W), (self.Hp, self.Wp) = plan.in_size, d["canvas"]
        self.h4, self.w4 = self.H * 4, self.W * 4
        self.seed = d["seed"]
        # a tile's canvas is a window of the frame's (tiled.py): its noise is that window of
        # the frame's canvas noise; (Hn, Wn) and (y, x) in output pixels
        self.noise_canvas = tuple(d.get("noise_canvas", (self.Hp, self.Wp)))
        self.noise_origin = tuple(d.get("noise_origin", (0, 0)))
        self.color_fix = d["color_fix"]
        self.out_resize = None
        if plan.out_size != (self.h4, self.w4):
            self.out_resize = (resample_matrix(self.h4, plan.out_size[0], "lanczos").float().to(device),
                               resample_matrix(self.w4, plan.out_size[1], "lanczos").float().T.to(device))
        P = (self.Hp // 128) * (self.Wp // 128)  # windows per temporal group
        ratio = d["sparse_ratio"] * 768 * 1280 / (self.Hp * self.Wp)
        self.topk = int(P * P * ratio) - 1
        self.kv_len = int(d["kv_ratio"])
        self.local = local_mask(self.Hp // 128, self.Wp // 128, d["local_range"], device)
        self.caches = [None] * len(self.dit.blocks)
        self.lq_frames: list[torch.Tensor] = []  # upsampled LQ, (3, Hp, Wp), from index base
        self.base = 0
        self.received = 0
        self.emitted = 0
        self.step = 0
        self.t0 = plan.start_frame // 4  # latent offset of a segment (noise convention)

    # -- frames --------------------------------------------------------------------------
    def _lq(self, a: int, b: int) -> torch.Tensor:
        """LQ frames [a, b) as (1, 3, b-a, Hp, Wp)."""
        return torch.stack(self.lq_frames[a - self.base:b - self.base], 1)[None]

    def _append(self, frames: torch.Tensor) -> None:
        up = upsample_pil_u8(frames.to(self.device), (self.h4, self.w4))  # (T, 3, 4H, 4W)
        up = F.pad(up, (0, self.Wp - self.w4, 0, self.Hp - self.h4), mode="replicate")
        for f in up.to(self.device, self.dtype):
            self.lq_frames.append(f)
        self.received += frames.shape[0]

    def _available(self) -> int:
        return self.base + len(self.lq_frames)

    def _needed(self) -> int:
        return FIRST_STEP_IN if self.step == 0 else FIRST_STEP_IN + STEP * self.step

    # -- one step ------------------------------------------------------------------------
    @torch.no_grad()
    def _run_step(self) -> torch.Tensor:
        k = self.step
        if k == 0:
            clips = [(0, 1)] + [(4 * i - 3, 4 * i + 1) for i in range(1, 7)]
            lat = list(range(0, 6))
        else:
            clips = [(8 * k + 17, 8 * k + 21), (8 * k + 21, 8 * k + 25)]
            lat = [4 + 2 * k, 5 + 2 * k]
        tokens = [tok for a, b in clips if (tok := self.lq.push(self._lq(a, b))) is not None]
        lq_tokens = torch.cat(tokens)  # (f*h*w, D)
        (hn, wn), (y, x) = self.noise_canvas, self.noise_origin
        noise = latent_noise(self.seed, [self.t0 + t for t in lat], (16, hn // 8, wn // 8),
                             device=self.device, dtype=self.dtype)
        noise = noise[..., y // 8:(y + self.Hp) // 8, x // 8:(x + self.Wp) // 8]
        noise = noise.transpose(0, 1)  # (T, C, h, w) -> (C, T, h, w)
        if self.parked is not None:
            self.parked.unpark()
        v = self.dit(noise, lq_tokens, self.t, self.t_mod, torch.tensor(lat), self.caches,
                     self.ctx_kv, self.topk, self.kv_len, self.local)
        if self.parked is not None:
            self.parked.park()
        x0 = (noise - v).transpose(0, 1)  # (T, 16, h, w)
        # this step's frames: [0, 21) at step 0, then [8k + 13, 8k + 21)
        first, last = (0, FIRST_STEP_OUT) if k == 0 else (8 * k + 13, 8 * k + 13 + STEP)
        cond = None
        if self.decoder.needs_lq:  # TCDecoder: LQ groups of 4 aligned with the latents
            cond = self._lq(first, last)
            if k == 0:
                cond = torch.cat([cond[:, :, :1].repeat(1, 1, 3, 1, 1), cond], 2)
        frames = self.decoder.decode(x0, cond)  # (n, 3, Hp, Wp) in [-1, 1]
        if self.color_fix != "none":
            ref = self._lq(first, first + frames.shape[0])[0].transpose(0, 1)
            frames = self._color(frames, ref)
        self.step += 1
        # the next step reads LQ frames from 8*step + 13 on (decoder condition): drop the rest
        drop = min(8 * self.step + 13, self._available()) - self.base
        if drop > 0:
            del self.lq_frames[:drop]
            self.base += drop
        return frames

    def _color(self, frames, ref):
        """Statistics from the real picture only: the padding would bias them."""
        h, w = self.h4, self.w4
        out = frames.clone()
        out[..., :h, :w] = color_fix(frames[..., :h, :w], ref[..., :h, :w], self.color_fix).to(frames.dtype)
        return out

    def _finish(self, frames: torch.Tensor, limit: int | None) -> torch.Tensor | None:
        """Crop the canvas, map to [0, 1] (T, H, W, 3), drop frames past ``limit``."""
        if limit is not None:
            frames = frames[: max(0, limit - self.emitted)]
        if frames.shape[0] == 0:
            return None
        self.emitted += frames.shape[0]
        x = (frames[..., : self.h4, : self.w4].float() + 1) / 2
        if self.out_resize is not None:
            mh, mw = self.out_resize
            x = mh @ x @ mw
        return x.permute(0, 2, 3, 1)

    # -- interface -----------------------------------------------------------------------
    def push(self, frames: torch.Tensor) -> Iterator[torch.Tensor]:
        self._append(frames)
        while self._available() >= self._needed():
            out = self._finish(self._run_step(), None)
            if out is not None:
                yield out

    def flush(self) -> Iterator[torch.Tensor]:
        n = self.received
        if n == 0:
            return
        # pad to the model's grid: outputs 8m-3 >= max(n, 21), plus 4 frames of look-ahead
        target = max(FIRST_STEP_OUT, n)
        target += (-(target + 3)) % 8
        last = self.lq_frames[-1]
        while self._available() < target + 4:
            self.lq_frames.append(last)
        while self.emitted < n:
            out = self._finish(self._run_step(), n)
            if out is not None:
                yield out

    def _relieve(self) -> str | None:
        return offload_relief(self.dit, self.dit.blocks, self.device,
                              blocked=self.parked is not None)

    def close(self) -> None:
        self.dit.guard = self.lq.guard = plain_call
        if hasattr(self.decoder, "guard"):
            self.decoder.guard = plain_call
        self.lq_frames.clear()
        self.caches = [None] * len(self.dit.blocks)
        if self.parked is not None:  # the engine's next stream finds its DiT where it was
            self.parked.unpark()
            self.parked = None

    def move_state(self, device) -> None:
        """The stream's state to ``device``: the KV caches, the LQ frames later steps read, the
        LQ projector's and the decoder's memories (spatial tiles park a tile's on the host)."""
        self.caches = move_tensors(self.caches, device)
        self.lq_frames = move_tensors(self.lq_frames, device)
        self.lq.cache1, self.lq.cache2 = move_tensors([self.lq.cache1, self.lq.cache2], device)
        if isinstance(self.decoder, VAEStream):
            for state in self.decoder.states.values():
                state.cache = move_tensors(state.cache, device)
        else:
            self.decoder.mem = move_tensors(self.decoder.mem, device)
