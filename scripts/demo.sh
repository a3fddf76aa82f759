#!/usr/bin/env bash
# README command 1: set up, fetch the demo gallery offline, build its index (packaged profile), serve on :8000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export IMGSEARCH_INDEX_DIR=${IMGSEARCH_INDEX_DIR:-data/index}
GALLERY=${GALLERY:-data/gallery}
PORT=${PORT:-8000}
.venv/bin/python -m scripts.demo_gallery --out "$GALLERY"
if [ ! -f "$IMGSEARCH_INDEX_DIR/current/meta.json" ] && [ ! -f "$IMGSEARCH_INDEX_DIR/meta.json" ] || [ -n "${REBUILD:-}" ]; then
  .venv/bin/python -m scripts.build_index --images "$GALLERY" --index-dir "$IMGSEARCH_INDEX_DIR" --profile packaged
fi
cat <<MSG

Serving on http://localhost:$PORT (models warm up in a few seconds; watch /readyz). Try:
  curl -s localhost:$PORT/readyz
  curl -s localhost:$PORT/search -H 'content-type: application/json' -d '{"query":"a cat","top_k":3}'
  curl -s -F image=@$GALLERY/photos/chelsea.jpg localhost:$PORT/describe

MSG
exec .venv/bin/uvicorn app.main:app --host "${HOST:-0.0.0.0}" --port "$PORT"
