"""The official code's outputs on tiny random weights (../shared/parity/seedvr2), reproduced
through the real CLI, every frame compared by the README's rule; and the DiT alone against the
goldens' latents."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from .common import PARITY, TINY, need_parity


def cases():
    f = PARITY / "cases.json"
    return json.loads(f.read_text())["cases"] if f.is_file() else []


def read_frames(folder):
    files = sorted(folder.glob("*.png"))
    return [np.array(Image.open(p).convert("RGB")) for p in files], [p.name for p in files]


@pytest.mark.parametrize("case", cases(), ids=lambda c: c["name"])
def test_golden_through_cli(case, tmp_path):
    need_parity()
    o = case["options"]
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "vsrkit", "upscale", str(PARITY / case["input_dir"]), "-o", str(out),
           "--model", case["model"], "--weights", str(PARITY / case["weights_dir"]),
           "--seed", str(o["seed"]), "--scale", str(o["scale"]), "--color-fix", o["color_fix"],
           "--device", "cpu", "--dtype", "fp32"]
    if case["out_size"] != case["resized_size"]:
        cmd += ["--fit", "crop"]  # the case records the official centre crop
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-2000:]
    got, names = read_frames(out)
    want, want_names = read_frames(PARITY / case["expected_dir"])
    assert names == want_names and len(got) == case["frames_out"]
    tol = case["tolerance"]["png_uint8"]
    diff = np.stack([np.abs(a.astype(int) - b.astype(int)) for a, b in zip(got, want)])
    assert diff.max() <= tol["max_abs"], f"max diff {diff.max()}"
    assert (diff > 0).mean() <= tol["max_fraction_differing"], f"{(diff > 0).mean():.2e} differ"


@pytest.mark.parametrize("model,case", [("seedvr2_ema_3b.pth", "seedvr2_3b_x2_5f"),
                                        ("seedvr2_ema_7b.pth", "seedvr2_7b_x2_5f")])
def test_dit_x0_latent(model, case):
    """x0 = noise - DiT(noise | cond | 1), noise seed + t, against the goldens' latents."""
    need_parity()
    from vsrkit import hub
    from vsrkit.engines.seedvr2 import weights as W
    from vsrkit.engines.seedvr2.config import infer_dit_config
    from vsrkit.engines.seedvr2.dit import NaDiT
    from vsrkit.noise import latent_noise

    lat = np.load(PARITY / "expected" / "seedvr2_3b_x2_5f" / "latents.npz")
    cond = torch.from_numpy(lat["cond_latent"])  # (t, h, w, 16), identical for both models
    ref = torch.from_numpy(np.load(PARITY / "expected" / case / "latents.npz")["x0_latent"])
    sd = hub.load_state_dict(TINY / model)
    dit = NaDiT(infer_dit_config(sd))
    W.load_into(dit, sd, model, "SeedVR2 DiT")
    txt = dit.embed_text(W.load_text(TINY / "pos_emb.pt"))
    t, h, w, c = cond.shape
    noise = latent_noise(666, range(t), (c, h, w)).permute(0, 2, 3, 1)
    with torch.no_grad():
        x0 = noise - dit(torch.cat([noise, cond, torch.ones(t, h, w, 1)], -1), txt)
    d = (x0 - ref).abs()
    assert d.max() <= 2e-4 and d.mean() <= 1e-5, (d.max(), d.mean())
