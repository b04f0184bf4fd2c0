"""Model files: the Hugging Face cache (HF_HOME, HF_HUB_OFFLINE respected), a local folder
(``--weights DIR``), or a plain URL (files that live outside the hub, e.g. FlashVSR's
``posi_prompt.pth`` in its GitHub repository). Loading unwraps the usual containers once and
checks keys and shapes with errors that name the file.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

from .errors import WeightsError


@dataclass(frozen=True)
class WeightFile:
    name: str  # published file name; also the name looked up in --weights DIR
    repo: str | None = None  # Hugging Face repo id
    url: str | None = None  # direct download when the file is not on the hub
    optional: bool = False  # e.g. the VAE of a variant the user does not run


def _url_cache_dir() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HOME) / "vsrkit"


def _cached(f: WeightFile) -> Path | None:
    if f.repo:
        from huggingface_hub import try_to_load_from_cache

        hit = try_to_load_from_cache(f.repo, f.name)
        return Path(hit) if isinstance(hit, str) else None
    if f.url:
        p = _url_cache_dir() / f.name
        return p if p.is_file() else None
    return None


def resolve(files: Sequence[WeightFile], *, model_id: str, weights_dir: str | os.PathLike | None = None,
            overrides: Mapping[str, str | os.PathLike | None] | None = None,
            download_flags: str = "") -> dict[str, Path]:
    """Map each file name to a local path, never downloading (``download()`` does that).

    ``overrides`` maps a file name to a path the user gave (e.g. ``--vae``). Missing files raise
    one ``WeightsError`` that lists them and gives the command that fixes it.
    """
    overrides = {k: v for k, v in (overrides or {}).items() if v}
    found: dict[str, Path] = {}
    missing: list[str] = []
    for f in files:
        if f.name in overrides:
            p = Path(overrides[f.name]).expanduser()
            if not p.is_file():
                raise WeightsError(f"{p}: no such file (given for {f.name})")
            found[f.name] = p
            continue
        if weights_dir is not None:
            p = Path(weights_dir).expanduser() / f.name
            if p.is_file():
                found[f.name] = p
            elif not f.optional:
                missing.append(f.name)
            continue
        hit = _cached(f)
        if hit is not None:
            found[f.name] = hit
        elif not f.optional:
            missing.append(f.name)
    if missing:
        where = f"in {weights_dir}" if weights_dir is not None else "in the Hugging Face cache"
        fix = (f"put them there, or run `vsrkit models download {model_id}{download_flags}` and "
               "drop --weights" if weights_dir is not None
               else f"run `vsrkit models download {model_id}{download_flags}` or pass --weights DIR")
        raise WeightsError(f"{model_id}: missing {', '.join(missing)} {where}; {fix}")
    return found


def download(files: Iterable[WeightFile], *, progress: bool = True) -> dict[str, Path]:
    """Fetch files into the standard cache (resumable for hub files). Offline -> WeightsError."""
    from huggingface_hub import constants, hf_hub_download

    out: dict[str, Path] = {}
    for f in files:
        if constants.HF_HUB_OFFLINE:
            hit = _cached(f)
            if hit is None:
                raise WeightsError(f"{f.name}: HF_HUB_OFFLINE is set and the file is not cached")
            out[f.name] = hit
            continue
        try:
            if f.repo:
                out[f.name] = Path(hf_hub_download(f.repo, f.name))
            elif f.url:
                out[f.name] = _download_url(f.url, _url_cache_dir() / f.name, progress)
            else:
                raise WeightsError(f"{f.name}: no download source known; pass --weights DIR")
        except WeightsError:
            raise
        except Exception as e:  # network, HTTP, disk: one line naming the file
            raise WeightsError(f"{f.name}: download failed ({type(e).__name__}: {e})") from e
    return out


def _download_url(url: str, dest: Path, progress: bool) -> Path:
    """Resumable plain-HTTP download into ``dest`` (a ``.part`` file grows until complete)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_suffix(dest.suffix + ".part")
    have = part.stat().st_size if part.exists() else 0
    req = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    with urllib.request.urlopen(req, timeout=60) as r:
        mode = "ab" if have and r.status == 206 else "wb"
        with open(part, mode) as fh:
            shutil.copyfileobj(r, fh, length=1 << 20)
    os.replace(part, dest)
    if progress:
        print(f"downloaded {dest.name} ({dest.stat().st_size / 2**20:.1f} MiB)")
    return dest


# -- loading -----------------------------------------------------------------------------------

_CONTAINER_KEYS = ("state_dict", "model", "module", "params_ema", "ema", "net")


def load_state_dict(path: str | os.PathLike, *, device: str = "cpu") -> dict:
    """A flat ``{key: tensor}`` from safetensors or a torch pickle (``weights_only``, mmap)."""
    import torch

    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device=device)
        else:
            try:
                sd = torch.load(path, map_location=device, weights_only=True, mmap=True)
            except RuntimeError:  # not a zip-format file: mmap unsupported
                sd = torch.load(path, map_location=device, weights_only=True)
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except Exception as e:
        raise WeightsError(f"{path.name}: not a readable checkpoint ({type(e).__name__}: {e})") from e
    return canonicalize(sd, path.name)


def load_shapes(path: str | os.PathLike) -> dict:
    """``{key: tensor}`` whose tensors only answer ``.shape``/``.dtype``/``.numel()``: read from
    a safetensors header (meta tensors, nothing else read), or a torch pickle memory-mapped
    (its storage is not read either). For planning before any weight is loaded."""
    import json
    import struct

    import torch

    path = Path(path)
    if path.suffix != ".safetensors":
        return load_state_dict(path)
    dtypes = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2, "F64": torch.float64,
              "I64": torch.int64, "I32": torch.int32, "I8": torch.int8, "U8": torch.uint8,
              "BOOL": torch.bool}
    try:
        with open(path, "rb") as f:
            (n,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(n))
    except FileNotFoundError:
        raise WeightsError(f"{path}: no such file") from None
    except (struct.error, ValueError) as e:
        raise WeightsError(f"{path.name}: not a readable safetensors file ({e})") from None
    header.pop("__metadata__", None)
    sd = {k: torch.empty(v["shape"], dtype=dtypes.get(v["dtype"], torch.uint8), device="meta")
          for k, v in header.items()}
    return canonicalize(sd, path.name)


def canonicalize(sd: object, name: str = "checkpoint") -> dict:
    """Unwrap ``{'state_dict': ...}``-style containers and strip ``module.`` prefixes."""
    import torch

    if isinstance(sd, torch.Tensor):
        return {"": sd}
    while isinstance(sd, dict) and len(sd) == 1 and next(iter(sd)) in _CONTAINER_KEYS:
        sd = next(iter(sd.values()))
    if not isinstance(sd, dict):
        raise WeightsError(f"{name}: expected a state dict, found {type(sd).__name__}")
    for prefix in ("module.", "_orig_mod."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return dict(sd)


def check_keys(sd: Mapping, expected: Mapping[str, Sequence[int]], file: str, *,
               what: str = "checkpoint", max_listed: int = 4) -> None:
    """Raise ``WeightsError`` naming missing/unexpected keys and the first shape mismatches."""
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} is {tuple(sd[k].shape)}, expected {tuple(expected[k])}"
             for k in expected if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or wrong):
        return
    parts = []
    if missing:
        parts.append(f"{len(expected) - len(missing)}/{len(expected)} required keys; missing: "
                     + ", ".join(missing[:max_listed]) + (" ..." if len(missing) > max_listed else ""))
    if unexpected:
        parts.append("unexpected: " + ", ".join(unexpected[:max_listed])
                     + (" ..." if len(unexpected) > max_listed else ""))
    parts += wrong[:max_listed]
    raise WeightsError(f"{file} is not a {what} ({'; '.join(parts)})")
