"""Output sizes and the run's plan. Pure arithmetic first (hypothesis-tested), then the
description the CLI prints for ``--dry-run``."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import UsageError
from .options import Options


@dataclass(frozen=True)
class SizeChoice:
    out_h: int
    out_w: int
    label: str  # for default output names: "x4", "x1.5", "1920x1080"


def output_size(in_h: int, in_w: int, opts: Options, native_scale: float) -> SizeChoice:
    """Output (H, W) from ``--scale``, ``--width/--height``, ``--resolution`` and
    ``--max-resolution``; aspect kept when one side is given. Sizes are rounded to the nearest
    integer (at least 1); odd sizes are allowed (the sink handles them)."""
    if opts.width and opts.height:
        h, w, label = opts.height, opts.width, f"{opts.width}x{opts.height}"
    elif opts.width:
        h, w = max(1, round(in_h * opts.width / in_w)), opts.width
        label = f"{w}x{h}"
    elif opts.height:
        h, w = opts.height, max(1, round(in_w * opts.height / in_h))
        label = f"{w}x{h}"
    elif opts.resolution:
        s = opts.resolution / min(in_h, in_w)
        h, w = max(1, round(in_h * s)), max(1, round(in_w * s))
        label = f"{w}x{h}"
    else:
        s = opts.scale if opts.scale is not None else native_scale
        h, w = max(1, round(in_h * s)), max(1, round(in_w * s))
        label = f"x{s:g}"
    if opts.max_resolution and max(h, w) > opts.max_resolution:
        s = opts.max_resolution / max(h, w)
        h, w = max(1, round(h * s)), max(1, round(w * s))
        label = f"{w}x{h}"
    if h * w > 16384 * 16384:
        raise UsageError(f"output {w}x{h} is larger than 16384x16384")
    return SizeChoice(h, w, label)


# -- fitting a plan to the memory budget ---------------------------------------------------------

# The order settings are tried in (cheapest in quality and speed first); the fastest candidate
# whose predicted peak fits the budget wins, ties going to the earlier one.
SAVINGS = ("tiled VAE", "offload blocks", "DiT tiles", "fp8 weights")
DIT_TILES = (512, 384, 256, 192, 128)  # --tile-size candidates, input pixels
TILE_OVERLAP = 16


def candidate_overrides(opts: Options, n_blocks: int, vae_tiles: bool = True) -> list[dict]:
    """Option overrides to try, in the documented order, each adding to the previous saving:
    as asked; tiled VAE; + N offloaded blocks (growing); + DiT tiles (shrinking); + FP8 weights
    (with the same offload and tile steps again). Settings the user gave are kept.
    ``vae_tiles=False``: the engine has no VAE to tile (FlashVSR Tiny's TCDecoder)."""
    out: list[dict] = [{}]
    base: dict = {}
    if vae_tiles and not opts.tiled_vae:
        base = {"tiled_vae": True}
        out.append(dict(base))
    asked_offload = opts.offload_blocks not in ("0", "auto")
    steps = [] if asked_offload else sorted({n for n in range(3, n_blocks + 1,
                                                             max(1, n_blocks // 8))} | {n_blocks})
    tiles = [] if opts.tile_size else [t for t in DIT_TILES]
    fp8 = [{}] if opts.weights_dtype == "fp8" else [{}, {"weights_dtype": "fp8"}]
    for q in fp8:
        if q:
            out.append({**base, **q})
        out += [{**base, **q, "offload_blocks": str(n)} for n in steps]
        last = {"offload_blocks": str(steps[-1])} if steps else {}
        out += [{**base, **q, "tile_size": t, "tile_overlap": TILE_OVERLAP} for t in tiles]
        out += [{**base, **q, **last, "tile_size": t, "tile_overlap": TILE_OVERLAP} for t in tiles]
    return out


def describe_overrides(ov: dict) -> str:
    flags = []
    for k, v in ov.items():
        flag = "--" + k.replace("_", "-")
        flags.append(flag if v is True else f"{flag} {v}")
    return " ".join(flags) or "the settings as asked"


def predicted_peak(plan) -> int | None:
    """The plan's predicted peak on its device: GPU bytes on CUDA, host bytes elsewhere."""
    return plan.est_gpu_bytes if plan.est_gpu_bytes is not None else plan.est_host_bytes


def choose_plan(engine, spec, opts: Options, budget: int | None,
                notice=None) -> tuple[object, Options]:
    """The engine's plan for ``opts`` if its predicted peak fits ``budget`` (bytes; None: no
    limit); else the fastest candidate of ``candidate_overrides`` that fits, applied as option
    overrides with one note per change. Raises ``ResourceError`` when nothing fits."""
    from .errors import ResourceError, UsageError
    from .memory import format_bytes

    plan = engine.plan(spec, opts)
    peak = predicted_peak(plan)
    if budget is not None:
        plan.details["memory budget"] = format_bytes(budget)
    if budget is None or peak is None or peak <= budget:
        return plan, opts
    n_blocks = getattr(getattr(engine, "shapes", None), "num_layers", None) or \
        getattr(getattr(getattr(engine, "shapes", None), "dit", None), "num_layers", 0)
    best = None  # (seconds, order, plan, opts, overrides)
    smallest = (peak, {})
    try:  # an engine without a VAE to tile refuses --tiled-vae: leave it out of every candidate
        engine.plan(spec, opts.replace(tiled_vae=True).validate())
        vae_tiles = True
    except UsageError:
        vae_tiles = False
    for i, ov in enumerate(candidate_overrides(opts, n_blocks, vae_tiles)[1:], 1):
        try:
            o = opts.replace(**ov).validate()
            p = engine.plan(spec, o)
        except UsageError:
            continue  # this engine does not offer that setting
        pk = predicted_peak(p)
        if pk is None:
            continue
        if pk < smallest[0]:
            smallest = (pk, ov)
        if pk <= budget:
            key = (p.est_seconds_per_frame or 0.0, i)
            if best is None or key < best[:2]:
                best = (*key, p, o, ov)
    if best is None:
        raise ResourceError(
            f"predicted peak {format_bytes(peak)} does not fit the memory budget "
            f"{format_bytes(budget)}; the smallest plan ({describe_overrides(smallest[1])}) needs "
            f"{format_bytes(smallest[0])}: give a budget of at least that, or a smaller output")
    _, _, plan, chosen, ov = best
    plan.details["memory budget"] = format_bytes(budget)
    for k, v in ov.items():
        plan.notes.append(f"planner: {describe_overrides({k: v})} (predicted {format_bytes(peak)} "
                          f"as asked, budget {format_bytes(budget)})")
    if notice is not None:
        notice(f"to fit {format_bytes(budget)} of GPU memory: {describe_overrides(ov)}")
    return plan, chosen


def budget_for(opts: Options) -> int | None:
    """``--vram-budget`` in bytes: explicit sizes always; ``auto`` on CUDA devices only (what is
    free now, minus a margin); None (no limit) otherwise."""
    if opts.vram_budget != "auto":
        from .options import parse_bytes

        return parse_bytes(opts.vram_budget, "vram_budget")
    from .devices import pick_device
    from .memory import vram_budget

    return vram_budget("auto", pick_device(opts.device))
