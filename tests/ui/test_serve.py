"""``vsrkit ui`` warns when it listens beyond localhost, and refuses a missing share folder."""

import socket
import subprocess
import sys
import time

import pytest

pytest.importorskip("gradio", reason="gradio is not installed (pip install -e .[test])")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_binding_beyond_localhost_warns(tmp_path):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "vsrkit", "ui", "--host", "0.0.0.0", "--port",
                             str(port), "--quiet"], stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline()  # the warning comes before the server starts
    finally:
        proc.terminate()
        proc.wait(15)
    assert line.startswith("vsrkit: warning: the UI listens on 0.0.0.0") and "no login" in line


def test_missing_share_path_is_a_usage_error(tmp_path):
    r = subprocess.run([sys.executable, "-m", "vsrkit", "ui", "--port", str(free_port()),
                        "--share-path", str(tmp_path / "nope")], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1]
    assert last == f"vsrkit: error: --share-path {tmp_path / 'nope'}: not a folder"
