#!/usr/bin/env bash
# README command 2: set up, then lint, type-check and run the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
.venv/bin/lint-imports  # imports run one way: the layers contract in pyproject.toml
.venv/bin/pytest -q "$@"
