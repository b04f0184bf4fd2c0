from hypothesis import given
from hypothesis import strategies as st

from vsrkit.tiling import blend_ramp, overlaps, pad_to_multiple, segments, tile_grid


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


@given(st.integers(0, 5000), st.integers(1, 500), st.integers(0, 100))
def test_segments_keep_every_frame_once(n, length, warmup):
    segs = segments(n, length, warmup)
    kept = [f for s in segs for f in range(s.keep_start, s.stop)]
    assert kept == list(range(n))
    for s in segs:
        assert 0 <= s.read_start <= s.keep_start and s.keep_start - s.read_start <= warmup


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
