"""bench/live_bytes.py, the meta-device tracer the estimate's coefficients are read with: a
storage counts once while any tensor made in the mode views it, and is freed with the last."""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
from live_bytes import LiveBytes  # noqa: E402


def test_views_keep_their_storage_and_count_once():
    mb = 1000 * 1000 * 4
    with LiveBytes() as lb:
        a = torch.empty(1000, 1000, device="meta")
        v, w = a[:500], a[500:]  # (500, 1000) views of a's 4 MB
        del a
        assert lb.now == mb
        b = torch.cat([v, w])  # a new 4 MB
        assert (lb.now, lb.peak) == (2 * mb, 2 * mb)
        del v
        assert lb.now == 2 * mb  # w still views the first storage
        del w
        assert lb.now == mb
        c = b.t().contiguous()  # a copy: another 4 MB
        del b, c
        assert lb.now == 0 and lb.peak == 2 * mb
        lb.reset_peak()
        assert lb.peak == 0
