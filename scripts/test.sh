#!/usr/bin/env bash
# Installs segany with its test dependencies into .venv (created if missing) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest -q "$@"
# The official usage under torch.inference_mode(): the parity suite again, every test body in that mode.
if [ "$#" -eq 0 ]; then
    SEGANY_PARITY_UNDER=inference_mode .venv/bin/python -m pytest -q tests/parity
fi
