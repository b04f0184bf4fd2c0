"""FlashVSR Full (--variant full): the same DiT and schedule with the Wan2.1 VAE as decoder, on CPU
with a tiny checkpoint folder in the official layout (tiny.py, ``vae=True``)."""

import shutil
import subprocess
import sys
from fractions import Fraction

import av
import pytest
import torch

import vsrkit
from tests.engines.flashvsr.tiny import make_tiny_flashvsr
from tests.media import make_video

MODEL = "flashvsr-v1.1"


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    return make_tiny_flashvsr(tmp_path_factory.mktemp("full") / "w", vae=True)


def cli(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "vsrkit", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout)


def times(path):
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        frames = [(float(f.pts * v.time_base), f.to_ndarray(format="rgb24")) for f in c.decode(v)]
    return [t for t, _ in frames], [f for _, f in frames]


@pytest.mark.parametrize("n", [5, 21, 30])
def test_cli_every_frame_out_with_its_timestamp(weights, tmp_path, n):
    src = make_video(tmp_path / "in.mkv", frames=n, size=(40, 28), rate=Fraction(24000, 1001))
    r = cli("upscale", src, "-o", tmp_path / "out.mkv", "--model", MODEL, "--variant", "full",
            "--weights", weights, "--device", "cpu", "--codec", "ffv1", "--quiet")
    assert r.returncode == 0, r.stderr
    t_in, _ = times(src)
    t_out, frames = times(tmp_path / "out.mkv")
    assert len(frames) == n and frames[0].shape == (112, 160, 3)
    assert t_out == pytest.approx(t_in, abs=1e-6)
    assert len({f.tobytes() for f in frames}) > 1  # the video moves; not one frame repeated


def test_full_decodes_with_the_vae_not_the_tcdecoder(weights, tmp_path):
    """Same DiT, same latents: the two variants differ only by decoder, so their frames differ;
    and full never reads TCDecoder.ckpt (a folder without it runs)."""
    src = make_video(tmp_path / "in.mp4", frames=9, size=(32, 32))
    folder = tmp_path / "w"
    shutil.copytree(weights, folder)
    (folder / "TCDecoder.ckpt").unlink()
    outs = {}
    for variant, w in (("full", folder), ("tiny", weights)):
        r = vsrkit.upscale(src, tmp_path / f"{variant}.mkv", model=MODEL, variant=variant,
                           weights=w, device="cpu", codec="ffv1")
        outs[variant] = torch.from_numpy(times(r.output)[1][0]).float()
    assert (outs["full"] - outs["tiny"]).abs().mean() > 5


def test_vae_path_reuses_a_file_the_user_has(weights, tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(weights, folder)
    vae = tmp_path / "elsewhere" / "my_wan_vae.pth"
    vae.parent.mkdir()
    shutil.move(folder / "Wan2.1_VAE.pth", vae)
    src = make_video(tmp_path / "in.mp4", frames=3, size=(32, 32))
    r = vsrkit.upscale(src, tmp_path / "o.mkv", model=MODEL, variant="full", weights=folder,
                       vae=str(vae), device="cpu", codec="ffv1")
    assert r.frames == 3


def test_missing_vae_one_line_with_the_fix(weights, tmp_path):
    folder = tmp_path / "w"
    shutil.copytree(weights, folder)
    (folder / "Wan2.1_VAE.pth").unlink()
    src = make_video(tmp_path / "in.mp4", frames=3, size=(32, 32))
    r = cli("upscale", src, "--model", MODEL, "--variant", "full", "--weights", folder,
            "--device", "cpu", timeout=120)
    assert r.returncode == 5, r.stderr
    assert r.stderr.count("\n") == 1 and "missing Wan2.1_VAE.pth" in r.stderr, r.stderr
    assert f"vsrkit models download {MODEL} --variant full" in r.stderr
    # tiny never asks for it
    assert vsrkit.upscale(src, tmp_path / "t.mkv", model=MODEL, weights=folder, device="cpu",
                          codec="ffv1").frames == 3


def test_download_lists_the_vae_only_for_full():
    from vsrkit.engines import create

    names = {v: [f.name for f in create(vsrkit.Options(model=MODEL, variant=v)).weight_files()]
             for v in (None, "tiny-long", "full")}
    assert "Wan2.1_VAE.pth" in names["full"] and "TCDecoder.ckpt" not in names["full"]
    assert all("Wan2.1_VAE.pth" not in names[v] for v in (None, "tiny-long"))


@pytest.mark.parametrize("flags", [["--tiled-vae"], ["--vae", "x.pth"], ["--variant", "huge"]])
def test_decoder_options_of_another_variant_fail_clearly(tmp_path, flags):
    src = make_video(tmp_path / "in.mp4", frames=2, size=(32, 32))
    r = cli("upscale", src, "--model", MODEL, "--device", "cpu", *flags, timeout=120)
    assert r.returncode == 2 and r.stderr.startswith("vsrkit: error:"), r.stderr
    assert r.stderr.count("\n") == 1


def run_session(weights, frames, opts, plan_details=None):
    """All frames through one engine session, pushed 7 at a time; (n, H, W, 3) float."""
    from dataclasses import replace

    from vsrkit.engines import create
    from vsrkit.frames import StreamSpec

    eng = create(opts)
    n, h, w, _ = frames.shape
    spec = StreamSpec(width=w, height=h, frame_rate=Fraction(30), time_base=Fraction(1, 30),
                      frames=n)
    plan = eng.plan(spec, opts)
    if plan_details:
        plan = replace(plan, details={**plan.details, **plan_details})
    s = eng.open(plan)
    outs = [o for i in range(0, n, 7) for o in s.push(frames[i:i + 7])] + list(s.flush())
    s.close()
    return plan, s, torch.cat(outs)


def test_tiled_vae_same_frames_close_values(weights):
    """A 256x128 canvas (32x16 latents) in 128 px tiles overlapping by 64: 3 tiles, each with its
    own causal state, over two steps. Frame count equal; values close (the tiny random VAE's
    attention is not local as a trained one's is; measured max 0.23, mean 0.011 on a 3x3 grid;
    test_wan_vae checks that a tile's interior is exact)."""
    g = torch.Generator().manual_seed(5)
    frames = torch.randint(0, 256, (29, 32, 60, 3), generator=g, dtype=torch.uint8)
    opts = vsrkit.Options(model=MODEL, variant="full", weights=str(weights), device="cpu")
    _, _, whole = run_session(weights, frames, opts)
    plan, _, tiled = run_session(weights, frames, opts.replace(tiled_vae=True, vae_tile_size=128,
                                                               vae_tile_overlap=64))
    assert plan.details["vae_tiles"] == (128, 64) and any("tiles" in n for n in plan.notes)
    assert whole.shape == tiled.shape == (29, 128, 240, 3)
    d = (whole - tiled).abs()
    assert d.mean() < 0.03 and d.max() < 0.5, (d.max(), d.mean())


def test_unload_dit_same_output_dit_on_host_while_decoding(weights):
    """The parking runs on CPU too when the plan asks for it (the engine plans it off there):
    while the VAE decodes, every DiT weight points at the host copy; the frames are identical."""
    g = torch.Generator().manual_seed(6)
    frames = torch.randint(0, 256, (29, 32, 32, 3), generator=g, dtype=torch.uint8)
    opts = vsrkit.Options(model=MODEL, variant="full", weights=str(weights), device="cpu")
    plan, _, ref = run_session(weights, frames, opts)
    assert plan.details["unload_dit"] is False  # nothing to gain on CPU
    from vsrkit.engines.flashvsr import FlashVSRSession

    seen = []
    decode = FlashVSRSession._run_step

    def spy(self):
        if self.parked is not None and not seen:
            host = {h.data_ptr() for h in self.parked.host}
            inner = self.decoder.decode

            def check(latents, lq):
                seen.append(all(p.data_ptr() in host for p in self.dit.parameters()))
                return inner(latents, lq)

            self.decoder.decode = check
        return decode(self)

    FlashVSRSession._run_step = spy
    try:
        _, s, out = run_session(weights, frames, opts, {"unload_dit": True})
    finally:
        FlashVSRSession._run_step = decode
    assert seen and all(seen) and len(seen) == 2  # step 0 and step 1 decoded with the DiT parked
    assert s.parked is None and torch.equal(out, ref)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_unload_dit_on_cuda_identical_and_frees_the_gpu(weights):
    g = torch.Generator().manual_seed(7)
    frames = torch.randint(0, 256, (30, 32, 48, 3), generator=g, dtype=torch.uint8)
    opts = vsrkit.Options(model=MODEL, variant="full", weights=str(weights), device="cuda")
    _, _, ref = run_session(weights, frames, opts)
    plan, s, out = run_session(weights, frames, opts.replace(unload_dit=True))
    assert plan.details["unload_dit"] is True
    assert torch.equal(out, ref)
    assert all(p.device.type == "cuda" for p in s.dit.parameters())  # back after close()
