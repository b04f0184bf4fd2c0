"""Spatial tiles around any streaming engine (``--tile-size``, ``--tile-overlap``).

The input frames are cut into overlapping tiles on the engine's grid (``tiling.tile_grid`` with
``on_grid``); every tile streams through its own inner session (its own KV cache, projector and
decoder memory; the same seed), and the tiles' outputs are blended on the output canvas with
``tiling.blend_weights``: ramps only where tiles overlap, never 0, image borders untouched. What
must see the whole frame happens once, on the blended canvas: the engine's ``finish`` (FlashVSR:
the colour fix against the whole frame) and the resize to the asked output size.

    frames (T, H, W, 3) --crop--> tile i --inner session i--> (k_i, s*th, s*tw, 3)
        --weights--> canvas accumulators (s*H, s*W, 3) --all tiles in--> finish --> resize --> out

Memory: a tile's step transients (attention, FFN, decoder) follow the tile, but every tile keeps
its streaming state between steps, so state (FlashVSR's KV cache) sums over the tiles, more than
the untiled frame's by the overlaps. On CUDA each tile's state therefore waits in pinned host
memory between its pushes (``EngineSession.move_state``; plan detail ``tile_state: host``): GPU
memory of one tile's state and step, at the price of copying every tile's state in and out once
per push.

An engine opts in from ``plan()`` (``plan_tiles``: checks the options, writes the grid into the
plan's details and notes) and ``open()`` (a ``TiledSession`` over its own sessions).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from .. import tiling
from ..errors import UsageError
from .base import EnginePlan, EngineSession

DEFAULT_OVERLAP = 24  # input pixels: FlashVSR+'s --overlap and Wan2GP's tile overlap default

Span = tuple[int, int]


@dataclass(frozen=True)
class TileGrid:
    """Tiles of an ``(H, W)`` input frame: row spans x column spans, input pixels."""

    tile: int  # on the grid (a multiple of ``multiple``)
    overlap: int  # asked; neighbours overlap by at least this
    multiple: int
    h_spans: tuple[Span, ...]
    w_spans: tuple[Span, ...]

    @property
    def tiles(self) -> list[tuple[Span, Span]]:
        """Row-major ``(rows, cols)`` spans of every tile."""
        return [(ys, xs) for ys in self.h_spans for xs in self.w_spans]

    @property
    def size(self) -> tuple[int, int]:
        return self.h_spans[-1][1], self.w_spans[-1][1]

    def __str__(self) -> str:
        spans = lambda ss: " ".join(f"{a}-{b}" for a, b in ss)  # noqa: E731
        return (f"{len(self.w_spans)}x{len(self.h_spans)} tiles (columns x rows) of up to "
                f"{self.tile}px, overlap >= {self.overlap}px (input pixels); "
                f"columns {spans(self.w_spans)}; rows {spans(self.h_spans)}")


def check(tile: int, overlap: int, multiple: int) -> int:
    """``tile`` floored to ``multiple``; ``UsageError`` (one line) when the values cannot make a
    grid whose neighbours overlap by ``overlap``."""
    t = tile // multiple * multiple
    if t < multiple or 2 * overlap >= t or t - overlap < multiple:
        raise UsageError(f"--tile-size {tile} / --tile-overlap {overlap}: tiles start on a "
                         f"{multiple}-px grid (input pixels), so this engine needs tile >= "
                         f"{multiple}, overlap < tile/2 and tile - overlap >= {multiple}")
    return t


def tile_grid(h: int, w: int, tile: int, overlap: int, multiple: int) -> TileGrid:
    """The grid of an ``(h, w)`` frame; ``tile`` is floored to ``multiple``."""
    t = check(tile, overlap, multiple)
    return TileGrid(t, overlap, multiple,
                    tuple(tiling.tile_grid(h, t, overlap, multiple, on_grid=True)),
                    tuple(tiling.tile_grid(w, t, overlap, multiple, on_grid=True)))


def tile_options(opts, multiple: int) -> tuple[int, int] | None:
    """``(--tile-size, --tile-overlap)`` with the default overlap, checked (engines call it
    before any work); None when not asked. The default overlap is cut to what the tile allows
    (32-px tiles on a 32-px grid: none)."""
    if opts.tile_size is None:
        if opts.tile_overlap is not None:
            raise UsageError(f"--tile-overlap {opts.tile_overlap}: needs --tile-size")
        return None
    overlap = opts.tile_overlap
    if overlap is None:
        t = opts.tile_size // multiple * multiple
        overlap = max(0, min(DEFAULT_OVERLAP, t - multiple, (t - 1) // 2))
    check(opts.tile_size, overlap, multiple)
    return opts.tile_size, overlap


def plan_tiles(plan: EnginePlan, opts, multiple: int) -> TileGrid | None:
    """The engine's opt-in, from ``plan()``: the grid of ``--tile-size/--tile-overlap`` for
    ``plan.in_size``, written into ``plan.details`` (``tile_size``, ``tile_overlap``, ``tiles``)
    and ``plan.notes``. None when not asked, or when one tile covers the frame (then the run is
    the untiled one, and a note says so)."""
    asked = tile_options(opts, multiple)
    if asked is None:
        return None
    h, w = plan.in_size
    grid = tile_grid(h, w, *asked, multiple)
    if len(grid.tiles) == 1:
        plan.notes.append(f"--tile-size {opts.tile_size}: one tile covers the {w}x{h} frame, "
                          "so it runs untiled")
        return None
    plan.details.update(tile_size=grid.tile, tile_overlap=grid.overlap, tiles=grid)
    plan.notes.append(f"DiT in {len(grid.tiles)} spatial tiles ({len(grid.w_spans)}x"
                      f"{len(grid.h_spans)}), each its own stream, blended where they overlap")
    if plan.device.startswith("cuda"):
        plan.details["tile_state"] = "host"
        plan.notes.append("each tile's streaming state waits in host memory between its steps "
                          "(GPU memory of one tile; its state copied in and out every step)")
    if grid.tile != opts.tile_size:
        plan.notes.append(f"--tile-size {opts.tile_size} -> {grid.tile} (multiples of "
                          f"{multiple} input pixels)")
    return grid


# finish(canvas (T, s*H, s*W, 3) float32 in [0, 1], inputs (T, H, W, 3) as pushed) -> same canvas
Finish = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


class TiledSession(EngineSession):
    """One stream as one inner session per tile, blended on the output canvas.

    ``open_tile(rows, cols)`` opens the inner session of a tile (spans in input pixels); it
    returns frames at ``scale`` times the tile's size in the engine's output format (float in
    [0, 1], or integers). ``out_size``: the output (H, W), reached by one resize of the blended
    canvas when it differs from ``scale`` times the input.

    Output frame i leaves once every tile has returned its frame i. Tiles may return different
    batch sizes: each adds its frames into per-frame canvas accumulators as they come, so what
    is buffered is the frames between the slowest and the fastest tile (at most the engine's
    latency, as every tile gets the same frames) plus their inputs (for ``finish``).

    ``park=(host, device)``: a tile's state moves to ``host`` after each of its pushes and back
    to ``device`` before the next (``EngineSession.move_state``). ``batch``: frames handed to
    the tiles at a time (FlashVSR: 8, its step), so a parked state moves once per step of the
    engine, not once per push of the pipeline.
    """

    def __init__(self, grid: TileGrid, open_tile: Callable[[Span, Span], EngineSession],
                 scale: int, out_size: tuple[int, int], finish: Finish | None = None,
                 park: tuple | None = None, batch: int = 1):
        self.grid, self.scale, self.out_size, self.finish = grid, scale, out_size, finish
        self.park, self.batch = park, batch
        self.pending: list[torch.Tensor] = []  # (T, H, W, 3) pushed, not yet given to the tiles
        self.sessions = [open_tile(ys, xs) for ys, xs in grid.tiles]
        self.weights: list[torch.Tensor] | None = None  # (s*th, s*tw, 1) per tile, normalized
        self.acc: deque[torch.Tensor] = deque()  # (s*H, s*W, 3) float32 from frame `emitted` on
        self.inputs: deque[torch.Tensor] = deque()  # (H, W, 3) pushed frames from `emitted` on
        self.added = [0] * len(self.sessions)  # frames each tile has blended in
        self.emitted = 0
        self.out_dtype: torch.dtype | None = None

    @property
    def notice(self):
        return self.sessions[0].notice if self.sessions else None

    @notice.setter
    def notice(self, fn) -> None:
        """What a tile changes on its own (out of memory) is said through the pipeline's."""
        for s in self.sessions:
            s.notice = fn

    def _add(self, i: int, out: torch.Tensor) -> None:
        """Blend tile i's next ``k`` output frames (k, s*th, s*tw, 3) into the canvas."""
        (y0, y1), (x0, x1) = self.grid.tiles[i]
        s = self.scale
        assert out.shape[1:] == ((y1 - y0) * s, (x1 - x0) * s, 3), f"{out.shape=} tile {i}"
        if self.weights is None:
            self.out_dtype = out.dtype
            self.weights = [m[..., None] for m in tiling.blend_weights(
                list(self.grid.h_spans), list(self.grid.w_spans), s, device=out.device)]
        H, W = self.grid.size
        first = self.added[i] - self.emitted  # index of out[0] among the accumulators
        while len(self.acc) < first + out.shape[0]:
            self.acc.append(torch.zeros(H * s, W * s, 3, device=out.device))
        for j, frame in enumerate(out):
            self.acc[first + j][y0 * s:y1 * s, x0 * s:x1 * s] += frame.float() * self.weights[i]
        self.added[i] += out.shape[0]

    def _ready(self) -> Iterator[torch.Tensor]:
        n = min(self.added) - self.emitted
        if n <= 0:
            return
        x = torch.stack([self.acc.popleft() for _ in range(n)])  # (n, s*H, s*W, 3)
        inputs = torch.stack([self.inputs.popleft() for _ in range(n)])
        self.emitted += n
        if self.finish is not None:
            x = self.finish(x, inputs)
        if tuple(x.shape[1:3]) != tuple(self.out_size):
            from ..ops.resize import resize

            x = resize(x.permute(0, 3, 1, 2), self.out_size, "lanczos").permute(0, 2, 3, 1)
        if not self.out_dtype.is_floating_point:  # integer outputs stay integers
            x = x.round().clamp(0, torch.iinfo(self.out_dtype).max).to(self.out_dtype)
        yield x

    def push(self, frames: torch.Tensor) -> Iterator[torch.Tensor]:
        assert frames.ndim == 4 and tuple(frames.shape[1:3]) == self.grid.size, \
            f"{frames.shape=}, tiles of a {self.grid.size} frame"
        self.inputs.extend(frames)
        self.pending.append(frames)
        if sum(len(f) for f in self.pending) >= self.batch:
            self._feed()
        yield from self._ready()

    def _feed(self) -> None:
        frames = torch.cat(self.pending) if len(self.pending) > 1 else self.pending[0]
        self.pending.clear()
        for i, ((y0, y1), (x0, x1)) in enumerate(self.grid.tiles):
            self._run(i, lambda s: s.push(frames[:, y0:y1, x0:x1]))

    def _run(self, i: int, call) -> None:
        """Tile i's push or flush, its state brought in and parked again around it."""
        session = self.sessions[i]
        if self.park:
            session.move_state(self.park[1])
        for out in call(session):
            self._add(i, out)
        if self.park:
            session.move_state(self.park[0])

    def flush(self) -> Iterator[torch.Tensor]:
        if self.pending:
            self._feed()
        for i in range(len(self.sessions)):
            self._run(i, lambda s: s.flush())
        yield from self._ready()
        if len(set(self.added)) != 1 or self.acc:
            raise RuntimeError(f"tile sessions returned different frame counts: {self.added}")

    def close(self) -> None:
        for s in self.sessions:
            s.close()
        self.acc.clear()
        self.inputs.clear()
