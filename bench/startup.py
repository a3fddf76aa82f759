"""Start-up: seconds from process start to `/readyz` 200, first start (empty cache) and second start.

    .venv/bin/python -m bench.startup      # builds a small packaged index of scikit-image's photos

The first start prepares what is slow and caches it under IMGSEARCH_CACHE_DIR, keyed by the model
file's hash: EfficientNet exported to ONNX and quantized to int8, MiniLM exported to ONNX, the
SmolLM2 GGUF de-quantised to safetensors (in the background: the first start is left running until
/readyz says `describe: ready`). The second start reads them back. Ready means /readyz 200: search
works. Last line: `RESULT startup first_s=… second_s=… speedup=…`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench.server import serve
from bench.soak import build_demo_index

PREPARING = re.compile(r"preparing|prepared|exported|ready in|ready on", re.IGNORECASE)


def describe_ready(base: str, timeout: float = 900) -> None:
    """Wait until /readyz says the language model finished loading (or failed, or is off)."""
    deadline = time.monotonic() + timeout
    while httpx.get(f"{base}/readyz").json().get("describe") == "loading":
        if time.monotonic() > deadline:
            raise SystemExit("the language model did not finish loading")
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    """Start the service twice over one cache directory; print what each start prepared."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--index-dir", type=Path, help="index to serve (default: build a small packaged one)")
    parser.add_argument("--starts", type=int, default=3, help="starts over the same cache (≥ 2)")
    args = parser.parse_args(argv)
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="imgsearch-startup-") as scratch:
        work = Path(scratch)
        index_dir = args.index_dir.resolve() if args.index_dir else build_demo_index(work)[0]
        env = {"IMGSEARCH_CACHE_DIR": str(work / "cache")}
        for number in range(max(2, args.starts)):
            log = work / f"start-{number}.log"
            with serve(index_dir, env, log=log) as server:
                times.append(server.ready_s)
                if number == 0:  # let the language model finish (and cache) what it prepares
                    describe_ready(server.base)
            lines = [line for line in log.read_text(errors="replace").splitlines() if PREPARING.search(line)]
            print(f"start {number + 1}: ready in {server.ready_s:.1f}s")
            for line in lines:
                print(f"    {line.split(': ', 1)[-1][:160]}")
    second = statistics.median(times[1:])
    print("| start | seconds to /readyz 200 |")
    for number, seconds in enumerate(times, 1):
        print(f"| {number}{' (empty cache)' if number == 1 else ''} | {seconds:.1f} |")
    print(f"RESULT startup first_s={times[0]:.1f} second_s={second:.1f} speedup={times[0] / second:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
