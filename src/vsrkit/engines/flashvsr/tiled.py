"""FlashVSR in spatial DiT tiles (``--tile-size``): the engine's side of ``engines.tiles``.

Tiles start on a 32-input-px grid (128 output px: an LCSA window of 8x8 patches), so each tile's
padded canvas is exactly a window of the whole frame's padded canvas, and its noise is that
window of the canvas noise (DESIGN.md, "Randomness": a tiled run draws the untiled run's noise).
Each tile is its own stream: its own KV cache, LQ projector and decoder memory. The colour fix
reads whole-frame statistics, so it runs once on the blended canvas, not per tile (per-tile
statistics give every tile its own colour: visible seams, as in FlashVSR+).
"""

from __future__ import annotations

import copy
import dataclasses

import torch

from ...ops.color import color_fix
from ...tiling import round_up
from ..base import EnginePlan
from ..tiles import TiledSession

TILE_MULTIPLE = 32  # input pixels: 128 output pixels, one LCSA window
SCALE = 4


def tile_plan(plan: EnginePlan, rows: tuple[int, int], cols: tuple[int, int]) -> EnginePlan:
    """The plan of one tile's inner session: its input size, its 4x output (no resize, no colour
    fix: both happen on the blended canvas), its padded canvas and where that canvas sits in the
    frame's (``noise_canvas``, ``noise_origin``, output pixels)."""
    th, tw = rows[1] - rows[0], cols[1] - cols[0]
    d = {k: v for k, v in plan.details.items() if k not in ("tiles", "tile_size", "tile_overlap")}
    d.update(canvas=(round_up(SCALE * th, 128), round_up(SCALE * tw, 128)), color_fix="none",
             noise_canvas=tuple(plan.details["canvas"]),
             noise_origin=(SCALE * rows[0], SCALE * cols[0]))
    return dataclasses.replace(plan, in_size=(th, tw), out_size=(SCALE * th, SCALE * tw),
                               details=d, notes=[])


def open_tiled(plan: EnginePlan, loaded, device: torch.device, dtype: torch.dtype,
               session_cls) -> TiledSession:
    """A ``TiledSession`` of ``session_cls`` (``FlashVSRSession``) sessions. ``loaded``:
    ``prepare()``'s (modules, prompt K/V, t, t_mod)."""
    from . import STEP, upsample_pil_u8

    (dit, lq, decoder), *rest = loaded

    def open_tile(rows, cols):
        # The LQ projector and the TCDecoder keep their stream's memory on the module: a shallow
        # copy per tile shares the weights (same parameter dicts) and owns that memory.
        mods = [dit, copy.copy(lq), copy.copy(decoder)]
        return session_cls(tile_plan(plan, rows, cols), (mods, *rest), device, dtype)

    fix = plan.details["color_fix"]
    h4, w4 = SCALE * plan.in_size[0], SCALE * plan.in_size[1]

    def finish(x: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
        """(T, 4H, 4W, 3) in [0, 1]: the colour fix against the whole upsampled frame."""
        ref = upsample_pil_u8(inputs.to(x.device), (h4, w4))  # (T, 3, 4H, 4W) in [-1, 1]
        y = color_fix(x.permute(0, 3, 1, 2) * 2 - 1, ref, fix)
        return ((y + 1) / 2).permute(0, 2, 3, 1)

    park = (torch.device("cpu"), device) if plan.details.get("tile_state") == "host" else None
    return TiledSession(plan.details["tiles"], open_tile, SCALE, plan.out_size,
                        finish=None if fix == "none" else finish, park=park, batch=STEP)
