from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from vsrkit.io.sink import quantize
from vsrkit.io.source import natural_key, pts_to_seconds, seconds_to_pts


@given(st.lists(st.integers(0, 10_000), min_size=1, max_size=50, unique=True),
       st.sampled_from(["img", "IMG_", "frame-", ""]))
def test_natural_sort_orders_numbers_numerically(nums, prefix):
    names = [f"{prefix}{n}.png" for n in nums]
    assert sorted(names, key=natural_key) == [f"{prefix}{n}.png" for n in sorted(nums)]


@given(st.integers(0, 10**9), st.sampled_from([Fraction(1, 90000), Fraction(1, 1000),
                                              Fraction(1001, 30000), Fraction(1, 15360)]))
def test_timestamp_mapping_round_trips(pts, tb):
    assert seconds_to_pts(pts_to_seconds(pts, tb), tb) == pts


@given(st.integers(0, 10**7), st.sampled_from([Fraction(1, 90000), Fraction(1, 1000)]),
       st.sampled_from([Fraction(1, 30000), Fraction(1, 48000), Fraction(1, 1000)]))
def test_timestamp_mapping_between_time_bases_is_nearest(pts, a, b):
    q = seconds_to_pts(pts_to_seconds(pts, a), b)
    assert abs(q * b - pts * a) <= b / 2


def test_quantize_rounds_half_to_even_after_clamping():
    import torch

    x = torch.tensor([-0.5, 0.0, 0.5 / 255, 1.5 / 255, 2.5 / 255, 1.0, 7.0]).reshape(1, 1, 7, 1)
    got = quantize(x.expand(1, 1, 7, 3), 8)[0, 0, :, 0].tolist()
    assert got == [0, 0, 0, 2, 2, 255, 255]
