"""FlashVSR engine on CPU with tiny random checkpoints in the official file layout."""

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

import vsrkit
from tests.engines.flashvsr.tiny import make_tiny_flashvsr
from tests.parity import PARITY_ROOT
from tests.media import make_image_sequence, make_video
from vsrkit.engines.flashvsr.dit import DiTConfig, WanDiT, local_mask
from vsrkit.engines.flashvsr.lq_proj import LQProjector
from vsrkit.engines.flashvsr.tcdecoder import TCDecoder

PARITY = PARITY_ROOT


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_tiny_flashvsr(tmp_path_factory.mktemp("fv") / "w")


def frames_of(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


@pytest.mark.parametrize("n", [1, 5, 21, 30])
def test_every_frame_out_any_count_any_size(weights, tmp_path, n):
    src = make_video(tmp_path / "in.mp4", frames=n, size=(40, 28), audio="aac")
    r = vsrkit.upscale(src, tmp_path / "out.mkv", model="flashvsr-v1.1", weights=weights,
                       device="cpu", codec="ffv1")
    out = frames_of(r.output)
    assert len(out) == n and out[0].shape == (112, 160, 3)  # 4x, padded to 128s and cropped


def test_push_one_by_one_equals_all_at_once(weights, tmp_path):
    from vsrkit.engines import create
    from vsrkit.frames import StreamSpec
    from fractions import Fraction

    opts = vsrkit.Options(model="flashvsr-v1", weights=str(weights), device="cpu", seed=3)
    eng = create(opts)
    spec = StreamSpec(width=32, height=32, frame_rate=Fraction(30), time_base=Fraction(1, 30),
                      frames=None)
    g = torch.Generator().manual_seed(0)
    frames = torch.randint(0, 256, (34, 32, 32, 3), generator=g, dtype=torch.uint8)
    runs = []
    for chunk in (1, 34):
        s = eng.open(eng.plan(spec, opts))
        outs = [o for i in range(0, 34, chunk) for o in s.push(frames[i:i + chunk])]
        outs += list(s.flush())
        runs.append(torch.cat(outs))
    assert runs[0].shape == (34, 128, 128, 3)
    assert torch.equal(runs[0], runs[1])


def test_seed_reproducible_and_matters(weights, tmp_path):
    seq = make_image_sequence(tmp_path / "seq", frames=9, size=(32, 32))
    outs = []
    for seed, name in ((5, "a"), (5, "b"), (6, "c")):
        r = subprocess.run([sys.executable, "-m", "vsrkit", "upscale", str(seq), "-o",
                            str(tmp_path / name), "--model", "flashvsr-v1.1", "--variant", "tiny",
                            "--weights", str(weights), "--device", "cpu", "--dtype", "fp32",
                            "--seed", str(seed), "--color-fix", "adain", "--sparse-ratio", "1.5",
                            "--kv-ratio", "2", "--local-range", "9", "--quiet"],
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        outs.append(np.stack(frames_of(tmp_path / name / "000000.png")
                             + frames_of(tmp_path / name / "000008.png")))
    assert np.array_equal(outs[0], outs[1])
    assert not np.array_equal(outs[0], outs[2])


def test_rope_any_position_only_relative_positions_matter():
    """Past the official 1024-latent table: a step at positions t+5000 gives the step at t."""
    torch.manual_seed(0)
    cfg = DiTConfig(dim=256, in_dim=16, ffn_dim=512, text_dim=64, freq_dim=256, num_layers=2,
                    out_dim=16, num_heads=2)
    dit = WanDiT(cfg).double()
    for p in dit.parameters():
        p.data.normal_(0, 0.05)
    x = torch.randn(16, 6, 32, 32, dtype=torch.float64)
    lq = torch.randn(6 * 16 * 16, 256, dtype=torch.float64) * 0.1
    ctx = dit.text_embedding(torch.randn(8, 64, dtype=torch.float64))
    kv = [b.cross_attn.kv(ctx) for b in dit.blocks]
    t, t_mod = dit.timestep(torch.float64, "cpu")
    local = local_mask(2, 2, 11, "cpu")
    outs = [dit(x, lq, t, t_mod, torch.arange(6) + off, [None, None], kv, 10, 3, local)
            for off in (0, 5000)]
    assert torch.allclose(outs[0], outs[1], atol=1e-9, rtol=0)


@pytest.mark.parametrize("name,build", [
    ("diffusion_pytorch_model_streaming_dmd.safetensors", lambda: WanDiT(DiTConfig(
        dim=1536, in_dim=16, ffn_dim=8960, text_dim=4096, freq_dim=256, num_layers=30,
        out_dim=16, num_heads=12))),
    ("LQ_proj_in.ckpt", lambda: LQProjector(3, 2048, 3072, 1536, causal=True)),
    ("TCDecoder.ckpt", lambda: TCDecoder([512, 256, 128, 128])),
])
def test_full_size_keys_and_shapes_match_manifests(name, build):
    manifest = PARITY / "flashvsr" / "manifests" / f"{name}.json"
    if not manifest.exists():
        pytest.skip(f"no manifest at {manifest} (set VSRKIT_PARITY_DIR)")
    with torch.device("meta"):
        module = build()
    got = {k: list(v.shape) for k, v in module.state_dict().items()}
    assert got == json.loads(manifest.read_text())["keys"]


def test_missing_weights_one_line_with_the_fix(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=3, size=(32, 32))
    r = subprocess.run([sys.executable, "-m", "vsrkit", "upscale", str(src), "--model",
                        "flashvsr-v1.1", "--weights", str(tmp_path), "--device", "cpu"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 5, r.stderr
    assert r.stderr.count("\n") == 1 and "diffusion_pytorch_model_streaming_dmd" in r.stderr


def test_flex_block_sparse_matches_reference_including_empty_rows(monkeypatch):
    """The FlexAttention path (run unfused on CPU) against the exact reference."""
    from torch.nn.attention.flex_attention import flex_attention

    import vsrkit.ops.attention as dit

    monkeypatch.setattr(dit, "_FLEX", flex_attention)
    g = torch.Generator().manual_seed(0)
    heads, nq, nk = 2, 6, 9
    q, k, v = (torch.randn(n, 128, heads * 128, generator=g) for n in (nq, nk, nk))
    mask = torch.rand(heads, nq, nk, generator=g) > 0.6
    mask[0, 1] = False  # query windows with no key window: zeros, as the CUDA kernel writes
    mask[1, 4] = False
    ref = dit.sparse_attention_reference(q, k, v, mask, heads)
    out = dit.sparse_attention_flex(q, k, v, mask, heads)
    assert torch.allclose(out, ref, atol=1e-5)
    assert out.view(nq, 128, heads, 128)[1, :, 0].abs().max() == 0


@pytest.mark.parametrize("flag", [["--fit", "crop"], ["--tiled-vae"], ["--tile-size", "16"],
                                  ["--tile-overlap", "8"]])
def test_options_not_built_yet_fail_clearly(tmp_path, flag):
    src = make_video(tmp_path / "in.mp4", frames=2, size=(32, 32))
    r = subprocess.run([sys.executable, "-m", "vsrkit", "upscale", str(src), "--model",
                        "flashvsr-v1.1", "--device", "cpu", *flag],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("vsrkit: error:"), r.stderr
