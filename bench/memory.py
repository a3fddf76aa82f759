"""Resident memory of the service (packaged profile, CPU) over indexes of 7, 10k and 1M images.

    .venv/bin/python -m bench.memory            # builds the small index, grows copies of it

Vectors are memory-mapped: pages of vectors.npy count as file-backed RSS once a search has read them
and the kernel can drop them under pressure; the models and the HNSW graph are private (anonymous)
memory. The 1M index stores no visual features (2.5 GB on disk; search by image falls back to the
text-space vectors there), so only text search is exercised. Last line:
`RESULT memory models_mb=… rss_10k_mb=… rss_1m_mb=… rss_1m_hnsw_mb=…`.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import httpx

from bench.scaled_index import scaled_index
from bench.server import memory, serve
from bench.soak import build_demo_index


def measure(index_dir: Path, searches: int, env: dict[str, str] | None = None) -> dict[str, float]:
    """Memory after start-up and after `searches` text searches."""
    with serve(index_dir, env) as server:
        at_ready = memory(server.process.pid)
        with httpx.Client(base_url=server.base, timeout=120) as client:
            for number in range(searches):
                client.post(
                    "/search", json={"query": f"a photo number {number}", "top_k": 10}
                ).raise_for_status()
        after = memory(server.process.pid)
    return {"ready": at_ready["rss"], **after}


def main(argv: list[str] | None = None) -> int:
    """Serve each index in turn and report its memory."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--searches", type=int, default=50)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--no-hnsw", action="store_true", help="skip the large index with an HNSW graph")
    args = parser.parse_args(argv)
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="imgsearch-memory-") as scratch:
        work = Path(scratch)
        small = build_demo_index(work)[0]
        rows["7 images"] = measure(small, args.searches)
        rows["10,000"] = measure(scaled_index(small, work / "10k", 10_000), args.searches)
        large = scaled_index(
            small, work / "large", args.large, thumbnails=False, features=False, ann=not args.no_hnsw
        )
        rows[f"{args.large:,} exact"] = measure(
            large, args.searches, {"IMGSEARCH_ANN_THRESHOLD": str(args.large + 1)}
        )
        if not args.no_hnsw:
            rows[f"{args.large:,} HNSW"] = measure(large, args.searches)
    print(
        "| index | RSS at ready (MB) | RSS after searches (MB) | of which private | of which mapped files |"
    )
    for name, row in rows.items():
        print(f"| {name} | {row['ready']:.0f} | {row['rss']:.0f} | {row['anon']:.0f} | {row['file']:.0f} |")
    values = list(rows.values())
    line = f"RESULT memory models_mb={values[0]['rss']:.0f} rss_10k_mb={values[1]['rss']:.0f} "
    line += f"rss_1m_mb={values[2]['rss']:.0f}"
    if not args.no_hnsw:
        line += f" rss_1m_hnsw_mb={values[3]['rss']:.0f}"
    print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())
