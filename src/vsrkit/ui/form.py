"""The page's form, from ``Options``' fields: which field goes where, what the widgets hand
back and how that becomes one validated ``Options``. No Gradio here, so it is testable alone.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Iterable, Sequence

from .. import engines
from ..cli import _base_type
from ..errors import InputError, UsageError
from ..options import Options

# Fields the page shows above the fold; every other field is an advanced option.
MAIN_FIELDS = ("model", "variant", "scale", "width", "height", "resolution")
# Fields the page sets itself: each job writes into its own fresh folder, and "Check plan"
# is the page's dry run.
PAGE_FIELDS = ("overwrite", "dry_run")
GROUP_TITLES = {
    "model": "Model and device", "size": "Size", "range": "Range (trim)",
    "output": "Output encoding", "quality": "Quality", "flashvsr": "FlashVSR",
    "seedvr2": "SeedVR2", "memory": "Memory and speed", "scale": "Scale-out (segments, GPUs)",
}
FAMILY_GROUPS = ("flashvsr", "seedvr2")  # shown only when the model is of that family
# Variants per family, as Options.variant's help lists them (a registry entry may carry its
# own list in ``kwargs["variants"]``, which wins).
VARIANTS = {"flashvsr": ("tiny", "tiny-long", "full"), "seedvr2": ("sharp",)}
# "auto": the CLI's choice (the input's own container when it holds every stream, else MKV)
CONTAINERS = (("Auto", "auto"), ("MKV", "mkv"), ("MP4", "mp4"), ("MOV", "mov"))
SIZE_MODES = ("Scale", "Short side", "Width × height")


def field_map() -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(Options)}


def advanced_groups() -> dict[str, list[dataclasses.Field]]:
    """Advanced fields by their ``group`` metadata, in the order ``Options`` declares them."""
    groups: dict[str, list[dataclasses.Field]] = {}
    for f in dataclasses.fields(Options):
        if f.name in MAIN_FIELDS or f.name in PAGE_FIELDS:
            continue
        groups.setdefault(f.metadata["group"], []).append(f)
    return groups


def widget_kind(f: dataclasses.Field) -> str:
    """checkbox, dropdown, int, float or text."""
    tp = _base_type(f.type)
    if tp is bool:
        return "checkbox"
    if f.metadata.get("choices"):
        return "dropdown"
    if tp is int:
        return "int"
    if tp is float:
        return "float"
    return "text"


def coerce(f: dataclasses.Field, raw: Any) -> Any:
    """A widget's value -> the field's value. Empty text or number -> the field's default
    (None = "the model's or input's default"). Floats from number boxes become ints where the
    field is an int; a fractional value there is a UsageError naming the flag."""
    kind = widget_kind(f)
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return f.default
    if kind == "checkbox":
        return bool(raw)
    if kind == "int":
        v = float(raw)
        if not v.is_integer():
            raise UsageError(f"--{f.name.replace('_', '-')} {raw!r}: must be a whole number")
        return int(v)
    if kind == "float":
        return float(raw)
    return str(raw).strip()


def build_options(values: dict[str, Any], size_mode: str = SIZE_MODES[0]) -> Options:
    """Widget values by field name -> validated ``Options``. Only the size fields of the
    chosen size mode count (the other boxes may hold stale numbers)."""
    keep = {SIZE_MODES[0]: ("scale",), SIZE_MODES[1]: ("resolution",),
            SIZE_MODES[2]: ("width", "height")}.get(size_mode, ())
    fields = field_map()
    kwargs = {}
    for name, raw in values.items():
        f = fields[name]
        if name in ("scale", "width", "height", "resolution") and name not in keep:
            continue
        if (name == "variant" and raw == "default") or (name == "scale" and raw == "native"):
            raw = None
        kwargs[name] = coerce(f, raw)
    return Options(**kwargs).validate()


def model_choices() -> list[tuple[str, str]]:
    return [(f"{e.id}  ·  {e.description}", e.id) for e in engines.MODELS.values()
            if not e.hidden]


def default_model() -> str:
    """The CLI's default model when its family is installed, else the first listed."""
    ids = [e.id for e in engines.MODELS.values() if not e.hidden]
    return Options().model if Options().model in ids else ids[0]


def model_family(model: str) -> str:
    e = engines.MODELS.get(model)
    return e.family if e else ""


def variant_choices(model: str) -> list[str]:
    e = engines.MODELS.get(model)
    if e is None:
        return ["default"]
    listed = e.kwargs.get("variants") or VARIANTS.get(e.family, ())
    return ["default", *listed]


def native_scale(model: str) -> float | None:
    """The engine class's native scale, read without building the engine."""
    import importlib

    e = engines.MODELS.get(model)
    if e is None:
        return None
    mod_name, cls_name = e.target.split(":")
    cls = getattr(importlib.import_module(f"vsrkit.engines.{mod_name}"), cls_name)
    return getattr(cls, "native_scale", None)


def scale_choices(native: float | None) -> list[tuple[str, str]]:
    """The scale picker: the model's native scale first ("native" = leave ``scale`` unset)."""
    first = [(f"native ({native:g}×)" if native else "native", "native")]
    return first + [(f"{s:g}×", f"{s:g}") for s in (1, 1.5, 2, 3, 4) if s != native]


def check_share_path(path: str | os.PathLike, share_paths: Sequence[str | os.PathLike]) -> Path:
    """The server file a page may read: it must exist and lie (after resolving links and
    ``..``) inside one of the ``--share-path`` folders."""
    if not share_paths:
        raise InputError("reading files on the server is off; start `vsrkit ui --share-path DIR`")
    p = Path(path).expanduser()
    try:
        real = p.resolve(strict=True)
    except (FileNotFoundError, RuntimeError):
        raise InputError(f"{path}: no such file") from None
    for root in share_paths:
        if real.is_relative_to(Path(root).expanduser().resolve()):
            return real
    raise InputError(f"{path}: outside the shared folders ({', '.join(map(str, share_paths))})")


def list_shared(share_paths: Iterable[str | os.PathLike], limit: int = 1000) -> list[str]:
    """Videos in the shared folders and their direct subfolders, for the page's picker."""
    from ..io.source import list_videos

    found: list[str] = []
    for root in share_paths:
        root = Path(root).expanduser()
        if not root.is_dir():
            continue
        for folder in [root, *sorted(p for p in root.iterdir() if p.is_dir())]:
            try:
                found += [str(p) for p in list_videos(folder)]
            except (OSError, InputError):
                continue
            if len(found) >= limit:
                return found[:limit]
    return found
