"""The one typed ``Options`` object. The CLI is generated from its fields, the API and the UI
build the same object, so defaults and help texts exist once.

Every field carries ``metadata``: ``help`` (shown by ``--help`` and the UI), ``group`` (a
heading), optionally ``choices`` and ``flag`` (the CLI name, default ``--field-name``).
``None`` means "the model's or the input's default", resolved by the engine's plan.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .errors import UsageError

CODECS = ("auto", "h264", "hevc", "av1", "prores", "ffv1", "png")
COLOR_FIXES = ("auto", "none", "adain", "wavelet", "wavelet_adaptive", "lab", "hsv")
DTYPES = ("auto", "fp32", "bf16", "fp16")


def _f(default: Any, help: str, group: str = "general", **meta: Any) -> Any:
    return field(default=default, metadata={"help": help, "group": group, **meta})


@dataclass(frozen=True, kw_only=True)
class Options:
    """Everything a run can be told. Construct with keywords; ``validate()`` checks values."""

    # -- model ---------------------------------------------------------------------------
    model: str = _f("flashvsr-v1.1", "model id (see `vsrkit models`): flashvsr-v1.1, flashvsr-v1, "
                    "seedvr2-3b, seedvr2-7b, lanczos, bicubic, nearest", "model", flag="--model")
    variant: str | None = _f(None, "model variant: flashvsr tiny (default), tiny-long, full; "
                             "seedvr2: sharp (7b only)", "model")
    weights: str | None = _f(None, "folder holding the model's files under their published names "
                             "(default: the Hugging Face cache)", "model")
    vae: str | None = _f(None, "path of a Wan2.1 VAE / SeedVR2 VAE file you already have", "model")
    device: str = _f("auto", "cpu, cuda, cuda:N or auto (first CUDA GPU, else CPU)", "model")
    dtype: str = _f("auto", "compute dtype: auto (bf16 on CUDA, fp32 on CPU), fp32, bf16, fp16",
                    "model", choices=DTYPES)
    seed: int = _f(0, "seed of the initial noise (runs are reproducible for a seed)", "model")

    # -- size ----------------------------------------------------------------------------
    scale: float | None = _f(None, "output scale factor (model native when omitted: 4 for "
                             "FlashVSR; other scales resize the model's 4x output)", "size")
    width: int | None = _f(None, "output width (aspect kept if --height is omitted)", "size")
    height: int | None = _f(None, "output height (aspect kept if --width is omitted)", "size")
    resolution: int | None = _f(None, "output short side in pixels (aspect kept)", "size")
    max_resolution: int | None = _f(None, "cap on the output's long side", "size")
    fit: str = _f("pad", "how sizes reach the model's multiples: pad (pad and crop back, keeps all "
                  "content) or crop (the official scripts' centre crop)", "size",
                  choices=("pad", "crop"))

    # -- range ---------------------------------------------------------------------------
    start: str | None = _f(None, "start time (seconds or HH:MM:SS.ms)", "range")
    end: str | None = _f(None, "end time, exclusive (seconds or HH:MM:SS.ms)", "range")
    frames: str | None = _f(None, "frame range A:B (0-based, B exclusive; either may be empty)",
                            "range")
    fps: str | None = _f(None, "frame rate of image-sequence input (default 30; e.g. 24000/1001)",
                         "range")

    # -- output --------------------------------------------------------------------------
    codec: str = _f("auto", "video codec: auto (by container: mkv/mp4 -> h264, 10-bit -> hevc), "
                    "h264, hevc, av1, prores, ffv1, png", "output", choices=CODECS)
    crf: int | None = _f(None, "constant rate factor of the codec (lower = better)", "output")
    quality: int | None = _f(None, "simple quality 1..10 (10 = best), mapped to the codec's CRF",
                             "output")
    pix_fmt: str | None = _f(None, "output pixel format (default: 10-bit in -> 10-bit out where "
                             "the codec allows)", "output")
    overwrite: bool = _f(False, "replace an existing output", "output")
    no_audio: bool = _f(False, "drop audio streams", "output")
    no_subtitles: bool = _f(False, "drop subtitle streams", "output")
    no_data: bool = _f(False, "drop data/attachment streams", "output")
    ignore_errors: bool = _f(False, "conceal corrupt frames (repeat the last good one) and go on",
                             "output")

    # -- quality ---------------------------------------------------------------------------
    color_fix: str = _f("auto", "color correction against the input: auto (model default: "
                        "FlashVSR adain, SeedVR2 lab), none, adain, wavelet, wavelet_adaptive, "
                        "lab, hsv", "quality", choices=COLOR_FIXES)
    sparse_ratio: float = _f(2.0, "FlashVSR: sparse attention budget (official 2.0)", "flashvsr")
    kv_ratio: float = _f(3.0, "FlashVSR: latent groups kept in the KV cache (official 3.0)",
                         "flashvsr")
    local_range: int = _f(11, "FlashVSR: local attention window in blocks (official 11)",
                          "flashvsr")
    batch_frames: int | None = _f(None, "SeedVR2: frames per temporal batch, 4n+1 "
                                  "(default: planned to fit memory)", "seedvr2")
    temporal_overlap: int | None = _f(None, "SeedVR2: frames shared by consecutive batches, "
                                      "blended", "seedvr2")
    input_noise_scale: float = _f(0.0, "SeedVR2: noise added to the input before encoding",
                                  "seedvr2")
    latent_noise_scale: float = _f(0.0, "SeedVR2: noise added to the condition latent",
                                   "seedvr2")

    # -- memory and speed -----------------------------------------------------------------
    attention: str = _f("auto", "attention backend: auto, reference, flex (FlashVSR), "
                        "sdpa, flash_attn (SeedVR2)", "memory")
    tile_size: int | None = _f(None, "spatial DiT tile size in input pixels (default: no tiling "
                               "unless memory needs it)", "memory")
    tile_overlap: int | None = _f(None, "overlap of DiT tiles in input pixels", "memory")
    tiled_vae: bool = _f(False, "decode (and encode) the VAE in overlapping spatial tiles, "
                         "blended (SeedVR2; FlashVSR --variant full)", "memory")
    vae_tile_size: int | None = _f(None, "VAE tile size in output pixels (default 512)", "memory")
    vae_tile_overlap: int | None = _f(None, "VAE tile overlap in output pixels (default 64)",
                                      "memory")
    unload_dit: bool = _f(False, "FlashVSR: keep the DiT's weights in host memory while the "
                          "decoder runs; costs one host-to-GPU copy of them (~2.8 GB in bf16) "
                          "per 8 output frames and as much pinned host memory; no effect on CPU",
                          "memory")
    vram_budget: str = _f("auto", "GPU memory the plan may use: auto or e.g. 24GiB", "memory")
    offload_blocks: str = _f("0", "transformer blocks kept on the host and streamed in: N or auto",
                             "memory")
    weights_dtype: str = _f("auto", "weight storage: auto, bf16, fp16, fp8", "memory")
    compile: bool = _f(False, "torch.compile each DiT block (FlashVSR, SeedVR2; the first run on a machine waits for the compiler, later runs read its disk cache; FlashVSR Tiny 1.34x at 1408x768, 1.18x at 1080p on an H200)", "memory")

    # -- scale-out ---------------------------------------------------------------------------
    segment_frames: int | None = _f(None, "frames per resumable segment (default: planned for "
                                    "the devices, at most ~600)", "scale")
    devices: str | None = _f(None, "run segments on several devices, one process each: "
                             "cuda:0,cuda:1 or all (a device may repeat: cpu,cpu)", "scale")
    ray: str | None = _f(None, "run segments on a Ray cluster: address or auto", "scale")

    # -- run -----------------------------------------------------------------------------------
    dry_run: bool = _f(False, "print the plan and its memory/time estimate, do nothing", "run")

    def replace(self, **changes: Any) -> "Options":
        return dataclasses.replace(self, **changes)

    def validate(self) -> "Options":
        """Raise ``UsageError`` naming the option and value; returns self for chaining."""
        pos = lambda n, v: v is None or v > 0 or _bad(n, v, "must be > 0")  # noqa: E731
        for name in ("scale", "width", "height", "resolution", "max_resolution", "sparse_ratio",
                     "kv_ratio", "local_range", "batch_frames", "tile_size", "vae_tile_size",
                     "segment_frames"):
            pos(name, getattr(self, name))
        for name in ("tile_overlap", "vae_tile_overlap", "temporal_overlap"):
            v = getattr(self, name)
            if v is not None and v < 0:
                _bad(name, v, "must be >= 0")
        if self.scale is not None and (self.width or self.height or self.resolution):
            raise UsageError("--scale conflicts with --width/--height/--resolution: give one")
        if self.resolution and (self.width or self.height):
            raise UsageError("--resolution conflicts with --width/--height: give one")
        if self.crf is not None and self.quality is not None:
            raise UsageError("--crf conflicts with --quality: give one")
        if self.quality is not None and not 1 <= self.quality <= 10:
            _bad("quality", self.quality, "must be 1..10")
        if self.crf is not None and not 0 <= self.crf <= 63:
            _bad("crf", self.crf, "must be 0..63")
        if self.frames is not None and (self.start is not None or self.end is not None):
            raise UsageError("--frames conflicts with --start/--end: give one")
        if self.frames is not None:
            parse_frame_range(self.frames)
        for name in ("start", "end"):
            if getattr(self, name) is not None:
                parse_time(getattr(self, name), name)
        if self.fps is not None:
            parse_rate(self.fps)
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                _bad(f.name, getattr(self, f.name), f"choose from {', '.join(choices)}")
        if self.batch_frames is not None and self.batch_frames % 4 != 1:
            _bad("batch_frames", self.batch_frames, "must be 4n+1 (1, 5, 9, 13, ...)")
        if not (self.offload_blocks == "auto" or self.offload_blocks.isdigit()):
            _bad("offload_blocks", self.offload_blocks, "must be a count or auto")
        if self.vram_budget != "auto":
            parse_bytes(self.vram_budget, "vram_budget")
        return self


def _bad(name: str, value: Any, why: str) -> None:
    raise UsageError(f"--{name.replace('_', '-')} {value!r}: {why}")


_TIME = re.compile(r"^(?:(\d+):)?(?:(\d+):)?(\d+(?:\.\d*)?)$")


def parse_time(text: str, name: str = "time") -> float:
    """'12.5', '01:02', '1:02:03.5' -> seconds."""
    m = _TIME.match(str(text).strip())
    if not m:
        _bad(name, text, "expected seconds or HH:MM:SS.ms")
    a, b, s = m.groups()
    parts = [p for p in (a, b) if p is not None]
    seconds = float(s)
    for i, p in enumerate(reversed(parts)):
        seconds += int(p) * 60 ** (i + 1)
    return seconds


def parse_frame_range(text: str) -> tuple[int, int | None]:
    """'A:B' -> (A, B) with B exclusive; 'A:' -> (A, None); ':B' -> (0, B)."""
    if ":" not in text:
        _bad("frames", text, "expected A:B")
    a, b = text.split(":", 1)
    try:
        start = int(a) if a.strip() else 0
        stop = int(b) if b.strip() else None
    except ValueError:
        _bad("frames", text, "expected integers A:B")
    if start < 0 or (stop is not None and stop <= start):
        _bad("frames", text, "needs 0 <= A < B")
    return start, stop


def parse_rate(text: str) -> Fraction:
    """'30', '29.97', '30000/1001' -> Fraction (29.97 is taken as 30000/1001)."""
    try:
        r = Fraction(str(text))
    except (ValueError, ZeroDivisionError):
        _bad("fps", text, "expected a number or a ratio like 30000/1001")
    if r <= 0:
        _bad("fps", text, "must be > 0")
    ntsc = Fraction(round(r * 1001 / 1000) * 1000, 1001)
    if r.denominator != 1 and "/" not in str(text) and abs(float(r - ntsc)) < 0.006:
        return ntsc
    return r


_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40, "t": 1e12, "tb": 1e12}


def parse_bytes(text: str, name: str = "size") -> int:
    m = re.match(r"^\s*(\d+(?:\.\d*)?)\s*([a-zA-Z]*)\s*$", str(text))
    if not m or m.group(2).lower() not in _UNITS:
        _bad(name, text, "expected a size like 24GiB")
    return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
