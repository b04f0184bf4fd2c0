"""SeedVR2 files: which to fetch, and loading them strictly into the modules.

Official: ``seedvr2_ema_{3b,7b}.pth`` and ``ema_vae.pth`` (float32) on the ByteDance-Seed hub
repos, the fixed text embedding ``pos_emb.pt`` from the official GitHub repository. Community:
``*_fp16.safetensors`` / ``*_fp8_e4m3fn*.safetensors`` with the same keys (numz/SeedVR2_comfyUI);
they load into the same modules (FP8 tensors kept for an FP8 path or upcast once: ``load_into``). The RoPE ``freqs`` buffers
stored in checkpoints are checked for shape and dropped: frequencies are always computed in fp32.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ... import hub, quant
from ...errors import WeightsError

HUB = {"3b": "ByteDance-Seed/SeedVR2-3B", "7b": "ByteDance-Seed/SeedVR2-7B"}
COMMUNITY = "numz/SeedVR2_comfyUI"
POS_EMB_URL = "https://raw.githubusercontent.com/ByteDance-Seed/SeedVR/main/pos_emb.pt"
VAE_FILE, TEXT_FILE = "ema_vae.pth", "pos_emb.pt"
ROPE_SUFFIX = "attn.rope.rope.freqs"


def dit_candidates(size: str, sharp: bool) -> list[hub.WeightFile]:
    """In order of preference; the first present is used."""
    if sharp:
        return [hub.WeightFile("seedvr2_ema_7b_sharp_fp16.safetensors", COMMUNITY),
                hub.WeightFile("seedvr2_ema_7b_sharp_fp8_e4m3fn_mixed_block35_fp16.safetensors",
                               "AInVFX/SeedVR2_comfyUI")]
    return [hub.WeightFile(f"seedvr2_ema_{size}.pth", HUB[size]),
            hub.WeightFile(f"seedvr2_ema_{size}_fp16.safetensors", COMMUNITY),
            hub.WeightFile(f"seedvr2_ema_{size}_fp8_e4m3fn.safetensors", COMMUNITY)]


def vae_candidates(size: str) -> list[hub.WeightFile]:
    return [hub.WeightFile(VAE_FILE, HUB[size]), hub.WeightFile("ema_vae_fp16.safetensors", COMMUNITY)]


def pick(cands: list[hub.WeightFile], model_id: str, weights_dir, override=None) -> hub.WeightFile:
    """The first candidate present (in --weights DIR or the cache); else the first (whose
    absence ``hub.resolve`` reports with the fix)."""
    if override:
        return hub.WeightFile(Path(override).name)
    for f in cands:
        try:
            hub.resolve([f], model_id=model_id, weights_dir=weights_dir)
            return f
        except WeightsError:
            continue
    return cands[0]


def load_into(module: torch.nn.Module, sd: dict, file: str, what: str, *,
              allow_unexpected: bool = False) -> None:
    """Strict load: missing keys and wrong shapes raise ``WeightsError`` naming them.

    Community FP8 files go through ``quant``: scale keys are split off (``split_scales``), the
    weights of ``FP8Linear`` modules (swapped in before loading, for ``--weights-dtype fp8``)
    keep their FP8 bits with their scales, and every other FP8 tensor is upcast once with its
    scale (``fit_state_dict``); float16 tensors are upcast to the module's dtype on the way in.
    """
    sd = {k: v for k, v in sd.items() if not k.endswith(ROPE_SUFFIX)}
    tensors, scales = quant.split_scales(sd)
    target = module.state_dict()
    if allow_unexpected:  # the official VAE loader is strict=False
        tensors = {k: v for k, v in tensors.items() if k in target}
    dtype = next(p.dtype for p in module.parameters() if p.dtype != quant.FP8)
    fitted = quant.fit_state_dict(tensors, scales, module, dtype=dtype)
    hub.check_keys(fitted, {k: tuple(v.shape) for k, v in target.items()}, file, what=what)
    module.load_state_dict({k: v if v.dtype == target[k].dtype else v.to(target[k].dtype)
                            for k, v in fitted.items()}, strict=True, assign=True)


def check_rope(sd: dict, freqs: int, file: str) -> None:
    for k, v in sd.items():
        if k.endswith(ROPE_SUFFIX) and tuple(v.shape) != (freqs,):
            raise WeightsError(f"{file}: {k} is {tuple(v.shape)}, expected ({freqs},) "
                               "(rope width does not match this model id)")


def load_text(path: Path) -> torch.Tensor:
    """(L_txt, 5120) float32 text embedding (the official file is bf16)."""
    t = hub.load_state_dict(path)
    t = next(iter(t.values())) if isinstance(t, dict) else t
    if not isinstance(t, torch.Tensor) or t.ndim != 2:
        raise WeightsError(f"{path.name}: expected a (tokens, channels) tensor")
    return t.float()
