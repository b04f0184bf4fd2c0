"""The one table of engines. ``vsrkit models`` prints it; ``create`` builds one by model id.

Engine modules are imported lazily so ``vsrkit --help`` and probing stay fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import UsageError

if TYPE_CHECKING:
    from ..options import Options
    from .base import Engine


@dataclass(frozen=True)
class ModelEntry:
    id: str
    family: str  # classical, flashvsr, seedvr2
    target: str  # "module:Class", relative to vsrkit.engines
    description: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    hidden: bool = False  # test configurations (tiny random checkpoints)


MODELS: dict[str, ModelEntry] = {}


def register(entry: ModelEntry) -> None:
    MODELS[entry.id] = entry


for _kind, _desc in (("lanczos", "Lanczos-3 (classical, any scale)"),
                     ("bicubic", "bicubic a=-0.5 (classical, any scale)"),
                     ("nearest", "nearest neighbour (classical, any scale)")):
    register(ModelEntry(_kind, "classical", "classical:ClassicalEngine", _desc,
                        {"kernel": _kind}))


def _load_family_tables() -> None:
    """Families register their ids in their package's ``MODELS`` list (cheap: no torch)."""
    for fam in ("flashvsr", "seedvr2"):
        try:
            mod = importlib.import_module(f".{fam}.registry", __name__)
        except ModuleNotFoundError as e:
            if e.name and e.name.startswith(f"{__name__}.{fam}"):
                continue
            raise
        for entry in mod.MODELS:
            register(entry)


_load_family_tables()


def entry(model: str) -> ModelEntry:
    try:
        return MODELS[model]
    except KeyError:
        known = ", ".join(m.id for m in MODELS.values() if not m.hidden)
        raise UsageError(f"--model {model!r}: unknown model; choose from {known}") from None


def create(opts: "Options") -> "Engine":
    e = entry(opts.model)
    mod_name, cls_name = e.target.split(":")
    cls = getattr(importlib.import_module(f".{mod_name}", __name__), cls_name)
    return cls(model_id=e.id, opts=opts, **e.kwargs)
