"""The Python API on CPU with the classical engines: real clips, real files, real frame counts."""

from pathlib import Path

import av
import pytest
import torch

import vsrkit
from vsrkit.api import Upscaler, upscale_folder
from vsrkit.errors import InputError, Interrupted, UsageError
from vsrkit.progress import CancelToken
from tests.media import make_video


def count_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def video_size(path: Path) -> tuple[int, int]:
    with av.open(str(path)) as c:
        cc = c.streams.video[0].codec_context
        return cc.width, cc.height


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("api")


@pytest.fixture(scope="module")
def clip(media) -> Path:
    return make_video(media / "clip.mp4", frames=12, size=(64, 48))


@pytest.fixture(scope="module")
def clip2(media) -> Path:
    return make_video(media / "other.mp4", frames=7, size=(40, 30))


@pytest.fixture(scope="module")
def long_clip(media) -> Path:
    return make_video(media / "long.mp4", frames=90, size=(64, 48))


def test_upscale_writes_every_frame_at_the_scale(clip, tmp_path):
    r = vsrkit.upscale(clip, tmp_path / "o.mkv", model="lanczos", scale=2, device="cpu")
    assert r.output == tmp_path / "o.mkv" and not r.partial
    assert r.frames == 12 == count_frames(r.output)
    assert video_size(r.output) == (128, 96)
    assert r.plan.out_size == (96, 128)


def test_upscaler_keeps_its_engine_across_videos(clip, clip2, tmp_path):
    with Upscaler("bicubic", device="cpu") as up:
        engine = up.engine
        a = up.upscale(clip, tmp_path / "a.mkv", scale=2)
        b = up.upscale(clip2, tmp_path / "b.mkv", width=60)  # per-call options override
        assert up.engine is engine
    assert (a.frames, count_frames(a.output), video_size(a.output)) == (12, 12, (128, 96))
    assert (b.frames, count_frames(b.output), video_size(b.output)) == (7, 7, (60, 45))


def test_upscaler_refuses_another_model_and_unknown_options(clip, tmp_path):
    with Upscaler("nearest", device="cpu") as up:
        with pytest.raises(UsageError, match="lanczos"):
            up.upscale(clip, tmp_path / "x.mkv", model="lanczos")
        with pytest.raises(UsageError, match="colour_fix"):
            up.upscale(clip, tmp_path / "x.mkv", colour_fix="none")
    assert not (tmp_path / "x.mkv").exists()


def test_missing_input_is_an_input_error(tmp_path):
    with pytest.raises(InputError):
        vsrkit.upscale(tmp_path / "nothing.mp4", tmp_path / "o.mkv", model="nearest")


def test_events_go_through_the_stages_and_reach_100_percent(clip, tmp_path):
    events = []
    vsrkit.upscale(clip, tmp_path / "o.mkv", model="nearest", scale=2, device="cpu",
                   on_event=events.append)
    stages = [e.stage for e in events]
    order = ["probing", "loading", "upscaling", "finalizing", "done"]
    assert [s for s in order if s in stages] == order
    assert [stages.index(s) for s in order] == sorted(stages.index(s) for s in order)
    ups = [e for e in events if e.stage == "upscaling"]
    done = [e.frames_done for e in ups]
    assert done == sorted(done) and done[-1] == 12
    assert ups[-1].frames_total == 12 and ups[-1].fraction == 1.0
    assert events[-1].stage == "done" and events[-1].fraction == 1.0


def test_cancel_gives_interrupted_with_a_valid_partial_file(long_clip, tmp_path):
    token = CancelToken()

    def on_event(e):
        if e.stage == "upscaling" and e.frames_done >= 8:
            token.cancel("test")

    with pytest.raises(Interrupted) as info:
        vsrkit.upscale(long_clip, tmp_path / "o.mkv", model="nearest", scale=2, device="cpu",
                       on_event=on_event, cancel=token)
    err = info.value
    assert not (tmp_path / "o.mkv").exists()
    partial = Path(err.partial_path)
    assert partial.exists() and ".partial" in partial.name
    assert 8 <= err.frames < 90
    assert count_frames(partial) == err.frames  # playable, and holds what it says
    assert video_size(partial) == (128, 96)


def test_on_frames_sees_every_output_with_its_input(clip, tmp_path):
    seen = []

    def on_frames(outputs, infos, inputs):
        # nearest at 2x: every other output pixel is the input pixel, so the pairing is exact
        assert outputs.shape[0] == len(infos) == inputs.shape[0]
        assert outputs.shape[1:] == (96, 128, 3) and inputs.shape[1:] == (48, 64, 3)
        assert torch.equal((outputs[:, ::2, ::2].float() * 255).round().to(torch.uint8), inputs)
        seen.extend(i.index for i in infos)

    r = vsrkit.upscale(clip, tmp_path / "o.mkv", model="nearest", scale=2, device="cpu",
                       on_frames=on_frames)
    assert seen == list(range(12)) and r.frames == 12


def test_folder_batch_skips_done_outputs_and_survives_a_failure(clip, clip2, tmp_path):
    src, out = tmp_path / "in", tmp_path / "out"
    src.mkdir()
    out.mkdir()
    (src / "a.mp4").write_bytes(clip.read_bytes())
    first = upscale_folder(src, out, model="nearest", scale=2, device="cpu")
    assert [(i.input.name, i.status) for i in first.items] == [("a.mp4", "done")]

    (src / "b.mp4").write_bytes(clip2.read_bytes())
    (src / "broken.mp4").write_bytes(b"this is not a video" * 50)
    reported = []
    res = upscale_folder(src, out, model="nearest", scale=2, device="cpu",
                         on_item=reported.append)
    status = {i.input.name: i for i in res.items}
    assert {k: v.status for k, v in status.items()} == {
        "a.mp4": "skipped", "b.mp4": "done", "broken.mp4": "failed"}
    assert status["broken.mp4"].reason and "Traceback" not in status["broken.mp4"].reason
    assert count_frames(status["b.mp4"].output) == 7
    assert status["a.mp4"].output == first.items[0].output
    assert [i.input.name for i in reported] == [i.input.name for i in res.items]
    table = res.table()
    assert "1 done, 1 skipped, 1 failed" in table and "broken.mp4" in table
