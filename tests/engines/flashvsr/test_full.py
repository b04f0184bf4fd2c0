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
