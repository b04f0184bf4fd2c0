"""engines/tiles.py: the tile grid, the blend weights, and TiledSession's streaming (any engine)."""

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from vsrkit.engines.base import EnginePlan, EngineSession
from vsrkit.engines.tiles import DEFAULT_OVERLAP, TiledSession, plan_tiles, tile_grid
from vsrkit.errors import UsageError
from vsrkit.options import Options
from vsrkit.tiling import blend_weights


class TileValue(EngineSession):
    """A stand-in engine whose output says where it came from: every output pixel of frame f is
    ``code + f``. It holds ``latency`` frames and returns them in batches of ``batch``, so tiles
    of one TiledSession return different batch sizes at different times."""

    def __init__(self, code: float, scale: int, latency: int, batch: int):
        self.code, self.scale, self.latency, self.batch = code, scale, latency, batch
        self.pending: list[int] = []
        self.received = 0

    def _out(self, n: int) -> torch.Tensor:
        f = torch.tensor(self.pending[:n], dtype=torch.float32)
        del self.pending[:n]
        h, w = self.shape
        return (self.code + f)[:, None, None, None].expand(n, h * self.scale, w * self.scale, 3)

    def push(self, frames):
        self.shape = frames.shape[1:3]
        self.pending += range(self.received, self.received + frames.shape[0])
        self.received += frames.shape[0]
        while len(self.pending) - self.latency >= self.batch:
            yield self._out(self.batch)

    def flush(self):
        while self.pending:
            yield self._out(min(self.batch, len(self.pending)))


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 90), st.integers(1, 90), st.sampled_from([1, 4, 8]),
       st.integers(2, 48), st.integers(0, 20), st.integers(1, 2), st.integers(1, 9))
def test_weights_positive_and_one_tile_keeps_its_value(h, w, multiple, tile, overlap, scale, n):
    try:
        grid = tile_grid(h, w, tile, overlap, multiple)
    except UsageError:
        assume(False)
    tiles = grid.tiles
    masks = blend_weights(list(grid.h_spans), list(grid.w_spans), scale)
    total = torch.zeros(h * scale, w * scale)
    cover = torch.zeros(h * scale, w * scale, dtype=torch.int64)
    for ((y0, y1), (x0, x1)), m in zip(tiles, masks):
        assert (m > 0).all()
        total[y0 * scale:y1 * scale, x0 * scale:x1 * scale] += m
        cover[y0 * scale:y1 * scale, x0 * scale:x1 * scale] += 1
    assert (cover > 0).all() and torch.allclose(total, torch.ones_like(total), atol=1e-6)

    codes = [1000.0 * (i + 1) for i in range(len(tiles))]
    sessions = iter(TileValue(c, scale, latency=i % 3, batch=1 + i % 4) for i, c in enumerate(codes))
    ts = TiledSession(grid, lambda ys, xs: next(sessions), scale, (h * scale, w * scale))
    frames = torch.zeros(n, h, w, 3, dtype=torch.uint8)
    outs = [o for i in range(n) for o in ts.push(frames[i:i + 1])] + list(ts.flush())
    out = torch.cat(outs)
    assert out.shape == (n, h * scale, w * scale, 3)
    for i, ((y0, y1), (x0, x1)) in enumerate(tiles):
        ys, xs = slice(y0 * scale, y1 * scale), slice(x0 * scale, x1 * scale)
        alone = cover[ys, xs] == 1
        for f in range(n):
            # a pixel one tile covers is that tile's value, bit for bit; frame f stays frame f
            assert torch.equal(out[f, ys, xs, 0][alone], torch.full_like(out[f, ys, xs, 0][alone],
                                                                          codes[i] + f))
    lo, hi = min(codes), max(codes) + n
    assert out.min() >= lo and out.max() <= hi  # overlaps: weighted means of the tiles


def test_grid_on_the_engines_multiple_last_tile_inside_the_frame():
    g = tile_grid(300, 53, 128, 24, 32)
    assert g.h_spans == ((0, 128), (96, 224), (192, 300)) and g.w_spans == ((0, 53),)
    for a, b in g.h_spans:
        assert a % 32 == 0 and b - a <= 128
    # the last tile ends at the frame's edge, its canvas padded to 128 reaches the frame's padded one
    assert g.h_spans[-1][0] + 128 == 320
    assert str(g).startswith("1x3 tiles")


@pytest.mark.parametrize("tile,overlap", [(16, 0), (64, 32), (40, 12), (100, 70)])
def test_bad_tile_values_one_usage_line(tile, overlap):
    with pytest.raises(UsageError) as e:
        tile_grid(200, 200, tile, overlap, 32)
    assert "\n" not in str(e.value) and f"--tile-size {tile}" in str(e.value)


def test_plan_tiles_defaults_and_notes():
    plan = EnginePlan("m", (100, 70), (400, 280), "cpu", "fp32")
    grid = plan_tiles(plan, Options(tile_size=64), 32)
    assert grid.overlap == DEFAULT_OVERLAP == 24 and plan.details["tile_overlap"] == 24
    assert plan.details["tiles"] is grid and len(grid.tiles) == 3 * 2
    assert any("6 spatial tiles" in n for n in plan.notes)
    assert "tiles: 2x3 tiles" in "\n".join(plan.describe())
    small = EnginePlan("m", (100, 70), (400, 280), "cpu", "fp32")
    assert plan_tiles(small, Options(tile_size=32), 32).overlap == 0  # 24 would not fit
    assert plan_tiles(small, Options(tile_size=96), 32).overlap == 24
    untiled = EnginePlan("m", (30, 20), (120, 80), "cpu", "fp32")
    assert plan_tiles(untiled, Options(tile_size=64), 32) is None
    assert "tiles" not in untiled.details and "runs untiled" in untiled.notes[0]
    with pytest.raises(UsageError, match="--tile-overlap 8: needs --tile-size"):
        plan_tiles(untiled, Options(tile_overlap=8), 32)


def test_one_resize_on_the_blended_canvas():
    """Other scales than the engine's: the blended canvas is resized once (a constant frame of
    tiles that agree stays constant; a per-tile resize would not even have the right size)."""
    grid = tile_grid(40, 40, 32, 8, 8)
    sessions = iter(TileValue(7.0, 4, 0, 2) for _ in grid.tiles)
    ts = TiledSession(grid, lambda ys, xs: next(sessions), 4, (61, 93))
    out = torch.cat(list(ts.push(torch.zeros(3, 40, 40, 3, dtype=torch.uint8))) + list(ts.flush()))
    assert out.shape == (3, 61, 93, 3)
    assert torch.allclose(out, 7.0 + torch.arange(3.0)[:, None, None, None], atol=1e-4)


class Parkable(TileValue):
    """Records where its state is when it works."""

    def __init__(self, *a):
        super().__init__(*a)
        self.where, self.worked_on = "device", []

    def move_state(self, device):
        self.where = device

    def push(self, frames):
        self.worked_on.append(self.where)
        yield from super().push(frames)

    def flush(self):
        self.worked_on.append(self.where)
        yield from super().flush()


def test_parked_tiles_work_on_the_device_and_wait_on_the_host():
    grid = tile_grid(40, 70, 32, 8, 8)
    made = []

    def open_tile(ys, xs):
        made.append(Parkable(1.0, 1, 2, 3))
        return made[-1]

    ts = TiledSession(grid, open_tile, 1, (40, 70), park=("host", "device"), batch=3)
    frames = torch.zeros(7, 40, 70, 3, dtype=torch.uint8)
    n = sum(len(o) for i in range(0, 7, 2) for o in ts.push(frames[i:i + 2]))
    n += sum(len(o) for o in ts.flush())
    assert n == 7 and len(made) == len(grid.tiles) > 1
    for s in made:  # pushes of 2, 2, 2, 1 fed once 3 wait: 4 frames, then 3, then the flush
        assert s.worked_on == ["device"] * 3 and s.where == "host"
        assert s.received == 7
