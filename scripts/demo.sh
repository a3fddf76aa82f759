#!/usr/bin/env bash
# README command 1: set up, fetch the demo gallery offline, build its index (packaged profile), serve on :8000.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export IMGSEARCH_INDEX_DIR=${IMGSEARCH_INDEX_DIR:-data/index}
GALLERY=${GALLERY:-data/gallery}
PORT=${PORT:-8000}
# This machine only unless told otherwise: HOST=0.0.0.0 opens it to the network (set IMGSEARCH_READ_KEY
# then, or anyone who can reach the machine can browse the collection; the service warns).
HOST=${HOST:-127.0.0.1}
export IMGSEARCH_HOST=$HOST
AUTH=""
if [ -n "${IMGSEARCH_READ_KEY:-}" ]; then AUTH=' -H "X-API-Key: $IMGSEARCH_READ_KEY"'; fi
.venv/bin/python -m scripts.demo_gallery --out "$GALLERY"
# Later runs update the index in place (only new or changed files are encoded; an index made by an
# older version gains what this one stores); REBUILD=1 builds it from scratch.
UPDATE=--update
if [ -n "${REBUILD:-}" ]; then UPDATE=""; fi
.venv/bin/python -m scripts.build_index --images "$GALLERY" --index-dir "$IMGSEARCH_INDEX_DIR" --profile packaged $UPDATE
cat <<MSG

Serving on http://$HOST:$PORT (models warm up in a few seconds; watch /readyz). Try:
  curl -s$AUTH localhost:$PORT/readyz
  curl -s$AUTH localhost:$PORT/search -H 'content-type: application/json' -d '{"query":"a cat","top_k":3}'
  curl -s$AUTH -F image=@$GALLERY/photos/chelsea.jpg localhost:$PORT/describe

MSG
exec .venv/bin/uvicorn app.main:app --host "$HOST" --port "$PORT"
