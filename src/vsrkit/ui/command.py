"""The ``vsrkit upscale`` command line that reproduces a run, generated from its ``Options``."""

from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

from ..options import Options


def option_flags(opts: Options) -> list[str]:
    """Flags for the fields that differ from ``Options()``'s defaults, in field order, spelt
    as the CLI spells them (``metadata["flag"]`` or ``--field-name``)."""
    default = Options()
    args: list[str] = []
    for f in dataclasses.fields(Options):
        value = getattr(opts, f.name)
        if value == getattr(default, f.name):
            continue
        flag = f.metadata.get("flag", "--" + f.name.replace("_", "-"))
        if isinstance(value, bool):  # store_true flags; a default of True does not exist
            if value:
                args.append(flag)
            continue
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # --scale 2, not --scale 2.0
        args += [flag, str(value)]
    return args


def cli_command(input: str | Path, output: str | Path | None, opts: Options) -> str:
    """A shell line: ``vsrkit upscale IN -o OUT --model lanczos --scale 2``."""
    args = ["vsrkit", "upscale", str(input)]
    if output is not None:
        args += ["-o", str(output)]
    args += option_flags(opts)
    return shlex.join(args)
