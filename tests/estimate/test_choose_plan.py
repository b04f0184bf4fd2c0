"""choose_plan with a simulated budget (CPU: the budget caps the predicted host peak), and
--dry-run through the CLI: the plan and its numbers, nothing run."""

import subprocess
import sys
from fractions import Fraction

import pytest
import torch

import vsrkit
from tests.engines.flashvsr.tiny import make_tiny_flashvsr, make_tiny_wan_vae
from tests.media import make_video
from vsrkit.engines import create
from vsrkit.errors import ResourceError
from vsrkit.frames import StreamSpec
from vsrkit.plan import candidate_overrides, choose_plan, predicted_peak

SPEC = StreamSpec(width=64, height=64, frame_rate=Fraction(30), time_base=Fraction(1, 30), frames=None)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    folder = make_tiny_flashvsr(tmp_path_factory.mktemp("fvfull") / "w")
    torch.save(make_tiny_wan_vae(dim=8), folder / "Wan2.1_VAE.pth")
    return folder


def test_candidates_follow_the_documented_order():
    opts = vsrkit.Options()
    c = candidate_overrides(opts, 30)
    assert c[0] == {} and c[1] == {"tiled_vae": True}
    kinds = [("fp8" if "weights_dtype" in o else "") + ("tile" if "tile_size" in o else
             "offload" if "offload_blocks" in o else "") for o in c[2:]]
    first = {k: kinds.index(k) for k in set(kinds)}
    assert first["offload"] < first["tile"] < first["fp8"]
    offl = [int(o["offload_blocks"]) for o in c if "offload_blocks" in o and "tile_size" not in o
            and "weights_dtype" not in o]
    assert offl == sorted(offl) and offl[-1] == 30
    assert all(o.get("tiled_vae") for o in c[1:])
    # what the user set is kept
    assert all("tiled_vae" not in o for o in candidate_overrides(opts.replace(tiled_vae=True), 30))


def test_choose_plan_applies_the_tiled_vae_when_only_it_fits(weights):
    opts = vsrkit.Options(model="flashvsr-v1.1", variant="full", weights=str(weights),
                          device="cpu", vae_tile_size=64, vae_tile_overlap=8)
    eng = create(opts)
    asked = predicted_peak(eng.plan(SPEC, opts))
    tiled = predicted_peak(eng.plan(SPEC, opts.replace(tiled_vae=True)))
    assert tiled < asked
    said = []
    plan, chosen = choose_plan(eng, SPEC, opts, (asked + tiled) // 2, said.append)
    assert chosen.tiled_vae and plan.details["vae_tiles"] == (64, 8)
    assert predicted_peak(plan) == tiled
    assert [n for n in plan.notes if n.startswith("planner:")] == [
        n for n in plan.notes if "--tiled-vae" in n]
    assert len(said) == 1 and "--tiled-vae" in said[0]
    # as asked when it fits; no budget: as asked
    assert not choose_plan(eng, SPEC, opts, asked, None)[1].tiled_vae
    assert not choose_plan(eng, SPEC, opts, None, None)[1].tiled_vae
    with pytest.raises(ResourceError, match="does not fit.*--tiled-vae") as e:
        choose_plan(eng, SPEC, opts, tiled // 2, None)
    assert "\n" not in str(e.value)


def test_dry_run_prints_predictions_and_runs_nothing(weights, tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=5, size=(48, 32))
    out = tmp_path / "out.mkv"
    r = subprocess.run([sys.executable, "-m", "vsrkit", "upscale", str(src), "-o", str(out),
                        "--model", "flashvsr-v1.1", "--weights", str(weights), "--device", "cpu",
                        "--dry-run", "--vram-budget", "64GiB"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "48x32 -> 192x128" in r.stdout
    assert "predicted peak host memory" in r.stdout and "predicted time" in r.stdout
    assert "memory budget: 64.00 GiB" in r.stdout
    assert not out.exists()
