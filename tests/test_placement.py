"""``--offload-blocks`` and ``--weights-dtype fp8`` reach both DiTs: the plan says so and the
estimate counts them, blocks on the host give the same frames (BlockSwap's hooks run on the
CPU too, with plain copies), FP8 linears replace the blocks' linears and stay close, and a
plan the planner picks for a budget is the plan the engine runs."""

from fractions import Fraction

import pytest
import torch

import vsrkit
from tests.engines.flashvsr.tiny import make_tiny_flashvsr
from vsrkit.engines import create
from vsrkit.errors import UsageError
from vsrkit.frames import StreamSpec
from vsrkit.quant import FP8Linear


# the CPU always; the GPU where there is one (BlockSwap's side-stream copies, FP8 on CUDA)
DEVICES = [("cpu", "fp32"), pytest.param("cuda", "bf16", marks=[
    pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")])]


def _spec(frames):
    return StreamSpec(width=frames.shape[2], height=frames.shape[1], frame_rate=Fraction(30),
                      time_base=Fraction(1, 30), frames=None)


def _run(eng, opts, frames):
    plan = eng.plan(_spec(frames), opts)
    s = eng.open(plan)
    try:
        return plan, torch.cat([*s.push(frames), *s.flush()])
    finally:
        s.close()


def _check(eng, base, frames, dit_of):
    plan0, ref = _run(eng, vsrkit.Options(**base), frames)
    n = len(dit_of(eng).blocks)
    plan1, off = _run(eng, vsrkit.Options(**base, offload_blocks=str(n)), frames)
    assert plan1.details["offload_blocks"] == n
    assert any("on the host" in x for x in plan1.notes)
    swap = dit_of(eng).swap
    assert swap is not None and swap.n_on_host == n
    assert all(p.device.type == "cpu" for b in swap.blocks for p in b.parameters())
    assert torch.equal(off, ref)  # the same weights, streamed: the same bits
    plan2, q = _run(eng, vsrkit.Options(**base, weights_dtype="fp8"), frames)
    assert plan2.details["weights_dtype"] == "fp8"
    linears = [m for b in dit_of(eng).blocks for m in b.modules()]
    assert any(isinstance(m, FP8Linear) for m in linears)
    assert not any(type(m) is torch.nn.Linear for m in linears)
    assert 0 < (q - ref).abs().mean() < 0.05, (q - ref).abs().mean()  # e4m3: ~4 % per layer
    # FP8 weights need less of the memory the weights live in
    if base["device"] == "cpu":
        assert plan2.est_host_bytes < plan0.est_host_bytes
    else:
        assert plan2.est_gpu_bytes < plan0.est_gpu_bytes
    _, back = _run(eng, vsrkit.Options(**base), frames)  # reloaded as asked
    assert torch.equal(back, ref)


@pytest.mark.parametrize("device,dtype", DEVICES)
def test_flashvsr_offload_and_fp8(tmp_path, device, dtype):
    w = make_tiny_flashvsr(tmp_path / "w")
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (26, 32, 32, 3), generator=g, dtype=torch.uint8)
    base = dict(model="flashvsr-v1.1", weights=str(w), device=device, dtype=dtype, seed=1)
    _check(create(vsrkit.Options(**base)), base, frames, lambda e: e.models[1][0][0])


@pytest.mark.parametrize("device,dtype", DEVICES)
def test_seedvr2_offload_and_fp8(device, dtype):
    from tests.engines.seedvr2.common import tiny_stream

    frames, base = tiny_stream(5, device, dtype)
    _check(create(vsrkit.Options(**base)), base, frames, lambda e: e.models[1][0])


def test_bad_placement_options_are_usage_errors(tmp_path):
    w = make_tiny_flashvsr(tmp_path / "w")
    frames = torch.zeros(1, 32, 32, 3, dtype=torch.uint8)
    base = dict(model="flashvsr-v1.1", weights=str(w), device="cpu", dtype="fp32")
    eng = create(vsrkit.Options(**base))
    for bad, says in (({"offload_blocks": "3"}, "has 2 blocks"),
                      ({"weights_dtype": "fp16"}, "compute dtype"),
                      ({"offload_blocks": "1", "unload_dit": True}, "choose one")):
        with pytest.raises(UsageError, match=says):
            eng.plan(_spec(frames), vsrkit.Options(**base, **bad))


def test_every_planner_candidate_is_the_plan_the_engine_runs(tmp_path):
    """The planner's overrides (offloaded blocks, FP8, DiT tiles) land in the plan's details,
    where the estimate reads them and the engine's ``open`` applies them: before, offload and
    FP8 changed neither, so a budget could never be met by them."""
    from vsrkit.plan import candidate_overrides

    w = make_tiny_flashvsr(tmp_path / "w")
    frames = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    opts = vsrkit.Options(model="flashvsr-v1.1", weights=str(w), device="cpu", dtype="fp32")
    eng = create(opts)
    seen = set()
    for ov in candidate_overrides(opts, 2, vae_tiles=False)[1:]:
        try:
            plan = eng.plan(_spec(frames), opts.replace(**ov).validate())
        except UsageError:
            continue  # a DiT tile larger than this small frame, say
        d = plan.details
        assert d["offload_blocks"] == int(ov.get("offload_blocks", 0)), ov
        assert d["weights_dtype"] == ov.get("weights_dtype"), ov
        seen |= set(ov)
    assert {"offload_blocks", "weights_dtype", "tile_size"} <= seen


def test_choose_plan_fits_tiny_flashvsr_to_a_budget(tmp_path):
    """Tiny has no VAE to tile; the planner used to add --tiled-vae to every candidate, so every
    one was refused and no budget below the plan as asked could be met."""
    from vsrkit.plan import choose_plan, predicted_peak

    w = make_tiny_flashvsr(tmp_path / "w")
    frames = torch.zeros(1, 64, 64, 3, dtype=torch.uint8)
    opts = vsrkit.Options(model="flashvsr-v1.1", weights=str(w), device="cpu", dtype="fp32")
    eng = create(opts)
    asked = predicted_peak(eng.plan(_spec(frames), opts))
    fp8 = predicted_peak(eng.plan(_spec(frames), opts.replace(weights_dtype="fp8")))
    plan, chosen = choose_plan(eng, _spec(frames), opts, (asked + fp8) // 2)
    assert predicted_peak(plan) <= (asked + fp8) // 2 < asked
    assert any(n.startswith("planner:") for n in plan.notes)
    assert not chosen.tiled_vae


def test_seedvr2_batch_out_of_memory_retried_with_smaller_vae_tiles():
    """A batch that runs out of GPU memory (simulated: the VAE raises CUDA's error for inputs
    wider than a tile) is run again with smaller VAE tiles, said once, and the frames are those
    of a run planned with those tiles; when the smallest plan fails too: one ResourceError."""
    from tests.engines.seedvr2.common import tiny_stream
    from vsrkit.errors import ResourceError

    frames, base = tiny_stream(9)
    eng = create(vsrkit.Options(**base))
    tiled = vsrkit.Options(**base, tiled_vae=True, vae_tile_size=32, vae_tile_overlap=8)
    _, want = _run(eng, tiled, frames)
    vae = eng.models[1][1]
    real = vae.encode_moments

    def small_only(x, *a, limit=32):
        if x.shape[-1] > limit:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(x, *a)

    vae.encode_moments = small_only
    try:
        said = []
        plan = eng.plan(_spec(frames), vsrkit.Options(**base))
        s = eng.open(plan)
        s.notice = said.append
        got = torch.cat([*s.push(frames), *s.flush()])
        assert torch.equal(got, want)
        assert said == ["out of GPU memory with the untiled VAE; retrying with VAE tiles of "
                        "32 px"]  # once, though every batch would have failed
        vae.encode_moments = lambda x, *a: small_only(x, *a, limit=0)
        s = eng.open(eng.plan(_spec(frames), vsrkit.Options(**base)))
        with pytest.raises(ResourceError, match="smallest plan \\(VAE tiles of 32 px\\)"):
            list(s.push(frames))
    finally:
        vae.encode_moments = real


def _fail_once_at(module, when, log):
    """``module``'s forward raises CUDA's out-of-memory error once, the first time ``when()``
    holds: as if that layer had not found the memory."""
    real = module.forward

    def forward(*a, **kw):
        if when() and not log.get(module):
            log[module] = True
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(*a, **kw)

    module.forward = forward
    return lambda: module.__dict__.pop("forward", None)


@pytest.mark.parametrize("device,dtype", DEVICES)
def test_flashvsr_out_of_memory_mid_stream_moves_blocks_to_the_host(tmp_path, device, dtype):
    """Out of memory inside a step (a decoder layer at step 2, a DiT block on the host at step
    3): the failed call runs again once more DiT blocks wait in host memory (half, then all),
    each change said once; the frames are those of a run that never ran out. With nothing left
    to move: one ResourceError. The engine then reloads the placement its plan asks for."""
    from vsrkit.placement import on_host
    from vsrkit.errors import ResourceError

    w = make_tiny_flashvsr(tmp_path / "w")
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (42, 32, 32, 3), generator=g, dtype=torch.uint8)
    opts = vsrkit.Options(model="flashvsr-v1.1", weights=str(w), device=device, dtype=dtype,
                          seed=1)
    eng = create(opts)
    plan, ref = _run(eng, opts, frames)
    dit, _, decoder = eng.models[1][0]
    n = len(dit.blocks)
    s = eng.open(plan)
    said, failed = [], {}
    s.notice = said.append
    undo = [_fail_once_at(decoder.decoder[1], lambda: s.step == 2, failed),
            _fail_once_at(dit.blocks[-1], lambda: s.step == 3, failed)]
    try:
        got = torch.cat([*s.push(frames), *s.flush()])
        assert len(failed) == 2  # both really failed once
        assert torch.equal(got, ref)
        assert said == [f"out of GPU memory; continuing with {k} of {n} DiT blocks in host memory "
                        f"(like --offload-blocks {k}: slower, same frames)" for k in (n // 2, n)]
        assert on_host(dit) == n
        s.close()
        s = eng.open(plan)  # as planned again: reloaded with no block on the host
        assert eng.models[1][0][0] is not dit and on_host(eng.models[1][0][0]) == 0
        dit, _, decoder = eng.models[1][0]
        s.close()
        plan_all = eng.plan(_spec(frames), opts.replace(offload_blocks=str(n)))
        s = eng.open(plan_all)
        dit, _, decoder = eng.models[1][0]
        failed.clear()
        undo.append(_fail_once_at(decoder.decoder[1], lambda: s.step == 1, failed))
        with pytest.raises(ResourceError, match="every memory saving"):
            list(s.push(frames))
    finally:
        for u in undo:
            u()
        s.close()


@pytest.mark.parametrize("device,dtype", DEVICES)
def test_seedvr2_dit_out_of_memory_moves_blocks_to_the_host(device, dtype):
    """Out of memory in a DiT block (not the VAE, whose failure shrinks the VAE tiles): that
    block runs again with half the blocks in host memory, said once, and the frames are those
    of a run that never ran out; the next stream gets the placement its plan asks for."""
    from tests.engines.seedvr2.common import tiny_stream
    from vsrkit.placement import on_host

    frames, base = tiny_stream(9, device, dtype)
    opts = vsrkit.Options(**base)
    eng = create(opts)
    plan, ref = _run(eng, opts, frames)
    dit = eng.models[1][0]
    n = len(dit.blocks)
    batches = []
    s = eng.open(plan)
    real_run = s._run
    s._run = lambda a, b: (batches.append(a), real_run(a, b))[1]
    said, failed = [], {}
    s.notice = said.append
    undo = _fail_once_at(dit.blocks[-1], lambda: len(batches) == 2, failed)
    try:
        got = torch.cat([*s.push(frames), *s.flush()])
        assert failed  # it really failed, in the second batch
        assert torch.equal(got, ref)
        assert said == [f"out of GPU memory; continuing with {n // 2} of {n} DiT blocks in host "
                        f"memory (like --offload-blocks {n // 2}: slower, same frames)"]
        assert on_host(dit) == n // 2
    finally:
        undo()
        s.close()
    s = eng.open(plan)
    s.close()
    assert eng.models[1][0] is not dit and on_host(eng.models[1][0]) == 0
