#!/usr/bin/env bash
# Install vsrkit with its test dependencies into .venv and run the whole test suite (CPU).
# Usage: ./scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
# The CPU build of torch is all the tests need and keeps the install small; GPU users install
# vsrkit with their CUDA torch instead (see README).
.venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[test]"
# The web UI test drives a real headless Chromium (Debian's package; no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q chromium >/dev/null
fi
exec .venv/bin/python -m pytest "$@"
