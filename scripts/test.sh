#!/usr/bin/env bash
# Installs segany with its test dependencies into .venv (created if missing) and runs the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet -e ".[dev]"
.venv/bin/ruff check src tests benchmarks
.venv/bin/python -m pytest -q "$@"
