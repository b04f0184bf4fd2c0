from hypothesis import given
from hypothesis import strategies as st

from vsrkit.tiling import (blend_ramp, context_frames, overlaps, pad_to_multiple,
                           plan_segments, tile_grid)


@given(st.integers(1, 5000), st.integers(1, 600), st.integers(0, 200), st.sampled_from([1, 8, 16, 32]))
def test_tiles_cover_canvas_on_multiples(size, tile, overlap, multiple):
    tile = max(tile, multiple)
    overlap = min(overlap, tile - 1)
    spans = tile_grid(size, tile, overlap, multiple)
    assert spans[0][0] == 0 and spans[-1][1] == size
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert c <= b, "gap between tiles"
        assert c > a, "tiles must advance"
    for a, b in spans[:-1]:
        assert a % multiple == 0


@given(st.integers(1, 3000), st.integers(16, 400), st.integers(0, 64))
def test_blend_weights_never_zero_and_borders_untouched(size, tile, overlap):
    overlap = min(overlap, tile // 2)
    spans = tile_grid(size, tile, overlap)
    total = [0.0] * size
    for (a, b), (before, after) in zip(spans, overlaps(spans)):
        for i, w in enumerate(blend_ramp(b - a, before, after)):
            assert w > 0
            total[a + i] += w
    assert all(t > 0 for t in total)
    first = blend_ramp(spans[0][1] - spans[0][0], *overlaps(spans)[0])
    assert first[0] == 1.0  # image border: no ramp


@given(st.integers(1, 5000), st.one_of(st.none(), st.integers(1, 500)), st.integers(1, 8),
       st.integers(0, 100), st.integers(0, 30), st.sampled_from([1, 4, 8]))
def test_segments_keep_every_frame_once(n, length, workers, warmup, lookahead, align):
    segs = plan_segments(n, workers=workers, warmup=warmup, lookahead=lookahead, align=align,
                         length=length)
    kept = [f for s in segs for f in range(s.keep_start, s.stop)]
    assert kept == list(range(n))
    assert [s.index for s in segs] == list(range(len(segs)))
    for s in segs:
        assert 0 <= s.read_start <= s.keep_start and s.read_start % align == 0
        assert s.keep_start - s.read_start < warmup + align
        if length is None:
            assert s.keep_start % align == 0


@given(st.integers(1, 20000), st.integers(1, 8), st.sampled_from([(0, 0), (48, 12), (21, 21)]),
       st.sampled_from([1, 8]))
def test_default_segments_balance_devices_and_bound_context(n, workers, ctx, align):
    warmup, lookahead = ctx
    segs = plan_segments(n, workers=workers, warmup=warmup, lookahead=lookahead, align=align)
    context = warmup + lookahead
    # recomputed context stays below 1/4 of the kept frames (a 1-segment plan has none)
    assert context_frames(segs, n, lookahead) <= n / 4 + len(segs) * align
    count = workers * -(-(-(-n // 600)) // workers)  # the devices' multiple for 600-frame pieces
    if n >= count * max(4 * context, 2 * align):
        # long enough: a multiple of the devices, each about max_length at most
        assert len(segs) % workers == 0
        assert max(s.kept for s in segs) <= 600 + warmup + 2 * align  # first: no warm-up
        # equal work per segment, within the grid rounding
        work = [s.stop - s.read_start + min(lookahead, n - s.stop) for s in segs]
        assert max(work) - min(work) <= 2 * align + (align if warmup % align else 0)


def test_default_segments_examples():
    # 1200 frames of FlashVSR (48 warm-up, 12 look-ahead, grid 8) on 1 or 2 GPUs: the same two
    # segments, each 630 frames of work
    for workers in (1, 2):
        segs = plan_segments(1200, workers=workers, warmup=48, lookahead=12, align=8)
        assert [(s.read_start, s.keep_start, s.stop) for s in segs] == [(0, 0, 616),
                                                                        (568, 616, 1200)]
    # 600 frames on 2 GPUs: two segments, not one (which would idle a GPU)
    assert len(plan_segments(600, workers=2, warmup=48, lookahead=12, align=8)) == 2
    # too short to split without recomputing more than a quarter: one segment
    assert len(plan_segments(200, workers=2, warmup=48, lookahead=12, align=8)) == 1
    # a stateless engine: 4 segments of 500 for 4 devices
    assert [s.kept for s in plan_segments(2000, workers=4)] == [500] * 4


@given(st.integers(1, 4000), st.integers(1, 4000), st.sampled_from([2, 8, 16, 128]))
def test_pad_to_multiple(h, w, m):
    ph, pw = pad_to_multiple(h, w, m)
    assert (h + ph) % m == 0 and (w + pw) % m == 0 and 0 <= ph < m and 0 <= pw < m


@given(st.integers(1, 5000), st.integers(1, 600), st.integers(0, 200), st.sampled_from([1, 8, 32]))
def test_tiles_on_grid_are_windows_of_the_padded_canvas(size, tile, overlap, multiple):
    tile = max(tile, multiple) // multiple * multiple
    overlap = min(overlap, tile - multiple)
    spans = tile_grid(size, tile, overlap, multiple, on_grid=True)
    assert spans[0][0] == 0 and spans[-1][1] == size
    if size > tile:
        assert all(a % multiple == 0 for a, _ in spans)  # every start on the grid, the last too
        # each tile padded to the multiple lies inside the frame padded to it
        assert all(a + tile <= -(-size // multiple) * multiple for a, _ in spans)
        assert all(b - a <= tile for a, b in spans)
        assert spans[-1][1] - spans[-1][0] > tile - multiple  # never smaller than the grid forces
    for (a, b), (c, d) in zip(spans, spans[1:]):
        assert a < c and b - c >= overlap


@given(st.integers(1, 5000), st.integers(1, 600), st.integers(0, 200), st.sampled_from([1, 8]))
def test_balanced_tile_same_count_no_longer(size, tile, overlap, multiple):
    from vsrkit.tiling import balanced_tile

    tile = max(tile, multiple)
    overlap = min(overlap, tile - 1)
    t = balanced_tile(size, tile, overlap, multiple)
    assert t <= max(tile, size) and (t == size or t <= tile)
    spans = tile_grid(size, t, overlap, multiple)
    assert len(spans) <= len(tile_grid(size, tile, overlap, multiple))
    assert spans[0][0] == 0 and spans[-1][1] == size
    def least_overlap(sp):
        return min([b - c for (a, b), (c, d) in zip(sp, sp[1:])], default=None)

    orig = least_overlap(tile_grid(size, tile, overlap, multiple))
    if orig is not None and least_overlap(spans) is not None:
        assert least_overlap(spans) >= min(orig, overlap), "overlap kept"
