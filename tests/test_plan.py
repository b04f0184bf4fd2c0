from hypothesis import given
from hypothesis import strategies as st

from vsrkit.options import Options
from vsrkit.plan import output_size


@given(st.integers(2, 2000), st.integers(2, 2000), st.floats(0.25, 8))
def test_scale_keeps_aspect(h, w, s):
    c = output_size(h, w, Options(scale=s), 4)
    assert c.out_h == max(1, round(h * s)) and c.out_w == max(1, round(w * s))


@given(st.integers(2, 2000), st.integers(2, 2000), st.integers(16, 4000))
def test_width_only_keeps_aspect(h, w, target):
    if h * target / w > 16384:
        return  # beyond the size limit: a UsageError (tested below)
    c = output_size(h, w, Options(width=target), 4)
    assert c.out_w == target
    assert abs(c.out_h / target - h / w) <= 1 / target + 1e-9


@given(st.integers(2, 2000), st.integers(2, 2000), st.integers(16, 2000), st.integers(16, 4000))
def test_resolution_and_cap(h, w, res, cap):
    c = output_size(h, w, Options(resolution=res, max_resolution=cap), 4)
    assert max(c.out_h, c.out_w) <= cap + 1


def test_native_scale_and_labels():
    assert output_size(270, 480, Options(), 4).label == "x4"
    c = output_size(270, 480, Options(), 4)
    assert (c.out_h, c.out_w) == (1080, 1920)
    assert output_size(270, 480, Options(width=1280, height=720), 4).label == "1280x720"


def test_too_large_is_a_usage_error():
    import pytest

    from vsrkit.errors import UsageError

    with pytest.raises(UsageError):
        output_size(237, 2, Options(width=1506), 4)
