"""``--compile`` on both DiTs (CPU, inductor's C++ backend): compiled blocks give the eager
output, a later plan without it restores the eager blocks, and a stream's later steps reuse the
compiled code instead of compiling again."""

from fractions import Fraction

import pytest
import torch

import vsrkit
from tests.engines.flashvsr.tiny import make_tiny_flashvsr
from vsrkit.engines import create
from vsrkit.frames import StreamSpec


def _spec(frames):
    return StreamSpec(width=frames.shape[2], height=frames.shape[1], frame_rate=Fraction(30),
                      time_base=Fraction(1, 30), frames=None)


def _run(eng, opts, frames):
    s = eng.open(eng.plan(_spec(frames), opts))
    try:
        return torch.cat([*s.push(frames), *s.flush()])
    finally:
        s.close()


def _compiled(blocks) -> bool:
    return all("forward" in b.__dict__ for b in blocks)


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VSRKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    yield
    torch._dynamo.reset()


def test_flashvsr_compiled_blocks_equal_eager(tmp_path):
    w = make_tiny_flashvsr(tmp_path / "w")
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (26, 32, 32, 3), generator=g, dtype=torch.uint8)
    base = dict(model="flashvsr-v1.1", weights=str(w), device="cpu", dtype="fp32", seed=1)
    eng = create(vsrkit.Options(**base))
    eager = _run(eng, vsrkit.Options(**base), frames)
    on = vsrkit.Options(**base, compile=True)
    assert any("compiled" in n for n in eng.plan(_spec(frames), on).notes)
    from torch._dynamo.utils import counters

    counters.clear()
    compiled = _run(eng, on, frames)
    blocks = eng.models[1][0][0].blocks
    assert _compiled(blocks)
    # 26 frames: 3 steps (the first, one with the KV cache filling, one more): every block
    # shares its graphs, so far fewer frames were compiled than blocks x steps called
    frames_compiled = counters["stats"]["unique_graphs"]
    assert 0 < frames_compiled < len(blocks) * 3
    assert torch.allclose(compiled, eager, atol=2e-4), (compiled - eager).abs().max()
    again = _run(eng, on, frames)  # a second video on the loaded model: no new graphs
    assert counters["stats"]["unique_graphs"] == frames_compiled
    assert torch.equal(again, compiled)
    assert torch.equal(_run(eng, vsrkit.Options(**base), frames), eager)  # restored
    assert not _compiled(blocks)
    assert any((tmp_path / "cache").rglob("*")), "nothing cached on disk"


def test_seedvr2_compiled_blocks_equal_eager():
    from tests.engines.seedvr2.common import tiny_stream

    frames, base = tiny_stream(5)
    eng = create(vsrkit.Options(**base))
    eager = _run(eng, vsrkit.Options(**base), frames)
    compiled = _run(eng, vsrkit.Options(**base, compile=True), frames)
    assert _compiled(eng.models[1][0].blocks)
    assert torch.allclose(compiled, eager, atol=2e-4), (compiled - eager).abs().max()
