"""The real web UI in a real browser: ``vsrkit ui`` as a subprocess, driven by Playwright in
headless Debian Chromium (never a downloaded browser). Upload a clip, upscale it to 100 %,
download the result; then stop a longer run mid-way and download its partial file.

Skipped, with the reason, when /usr/bin/chromium or Playwright is missing (the README's test
script installs both). A screenshot of the finished page goes to test-artifacts/.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import av
import pytest

from tests.media import make_video

CHROMIUM = Path(os.environ.get("VSRKIT_CHROMIUM", "/usr/bin/chromium"))
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
pw = pytest.importorskip("playwright.sync_api", reason="playwright is not installed "
                         "(pip install -e .[test])")
pytest.importorskip("gradio", reason="gradio is not installed (pip install -e .[test])")
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} is missing (apt-get install -y chromium)", allow_module_level=True)


def count_frames(path: Path) -> int:
    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """``vsrkit ui`` on a free port, with its outputs in a temporary Gradio folder."""
    tmp = tmp_path_factory.mktemp("ui")
    port = free_port()
    env = {**os.environ, "GRADIO_TEMP_DIR": str(tmp / "gradio"), "PYTHONUNBUFFERED": "1"}
    log = open(tmp / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "vsrkit", "ui", "--port", str(port)],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 90
    while True:
        try:
            urllib.request.urlopen(url, timeout=2)
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("vsrkit ui did not start:\n" + (tmp / "server.log").read_text())
            time.sleep(0.3)
    yield url, tmp
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()
    assert "Traceback" not in (tmp / "server.log").read_text()


@pytest.fixture(scope="module")
def page(server):
    with pw.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        ctx = browser.new_context(viewport={"width": 1440, "height": 1000},
                                  accept_downloads=True)
        pg = ctx.new_page()
        pg.set_default_timeout(30_000)
        pg.goto(server[0])
        pg.wait_for_selector("#start")
        yield pg
        browser.close()


def choose(page, elem_id: str, value: str) -> None:
    """Pick a Gradio dropdown option by typing its value and choosing the match."""
    box = page.locator(f"#{elem_id} input").first
    box.click()
    box.fill(value)
    page.locator("[role=listbox] [role=option]", has_text=value).first.click()


def upload(page, path: Path) -> None:
    """Upload, then wait until the page has probed it (the probe text changes)."""
    before = page.locator("#probe").inner_text()
    clear = page.locator("#upload button[aria-label='Clear']")
    if clear.count():  # a file is already there: remove it, as a user would
        clear.first.click()
    page.locator("#upload input[type=file]").set_input_files(str(path))
    page.wait_for_function("(b) => { const t = document.querySelector('#probe').innerText;"
                           " return t.trim() !== '' && t !== b }", arg=before)
    page.wait_for_function("document.querySelector('#thumb img') !== null")


def status(page) -> str:
    return page.locator("#progress .vsr-progress").get_attribute("data-status") or ""


def download(page, tmp: Path) -> Path:
    button = page.locator("#download")
    button.wait_for(state="visible")
    with page.expect_download() as info:
        button.click()
    d = info.value
    target = tmp / d.suggested_filename
    d.save_as(target)
    return target


def test_upscale_to_100_percent_then_stop_a_long_run(server, page, tmp_path):
    try:
        _upscale_then_stop(page, tmp_path)
    except BaseException:
        ARTIFACTS.mkdir(exist_ok=True)  # what the page showed when it went wrong
        page.screenshot(path=str(ARTIFACTS / "ui-failure.png"), full_page=True)
        raise


def _upscale_then_stop(page, tmp_path):
    clip = make_video(tmp_path / "clip.mp4", frames=24, size=(96, 64))
    upload(page, clip)
    choose(page, "model", "lanczos")
    choose(page, "scale", "4×")
    page.click("#plan-btn")
    page.wait_for_function("document.querySelector('#plan').innerText.includes('-> 384x256')")
    page.click("#start")
    page.wait_for_selector("#progress [data-status=done]", timeout=60_000)
    assert "100%" in page.locator("#progress").inner_text()
    out = download(page, tmp_path)
    assert count_frames(out) == 24
    with av.open(str(out)) as c:
        assert (c.streams.video[0].width, c.streams.video[0].height) == (384, 256)
    assert page.locator("#probe").inner_text().startswith("clip.mp4")
    command = page.locator("#command textarea").input_value()
    assert command.startswith("vsrkit upscale clip.mp4 -o ")
    assert command.endswith(" --model lanczos --scale 4")
    page.wait_for_function("document.querySelector('#result-video video') !== null")
    page.wait_for_function("document.querySelectorAll('#compare img').length >= 2")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "ui-finished.png"), full_page=True)

    # a longer, larger run, stopped mid-way: the partial file is valid and shorter
    long = make_video(tmp_path / "long.mp4", frames=600, size=(160, 96))
    upload(page, long)
    page.click("#start")
    page.wait_for_function(
        "(() => { const p = document.querySelector('#progress .vsr-progress');"
        " return p && p.dataset.status === 'running' && +p.dataset.frames > 0 })()",
        timeout=60_000)
    page.click("#stop")
    page.wait_for_selector("#progress [data-status=stopped]", timeout=60_000)
    partial = download(page, tmp_path)
    assert ".partial" in partial.name
    n = count_frames(partial)
    assert 0 < n < 600
    assert f"partial file ({n} frames)" in page.locator("#download").inner_text()
    page.screenshot(path=str(ARTIFACTS / "ui-stopped.png"), full_page=True)
    shutil.copy(ARTIFACTS / "ui-finished.png", ARTIFACTS / "ui.png")
