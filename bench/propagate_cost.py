"""What build-time propagation costs: each picture's k nearest named pictures by visual feature (faiss).

Synthetic unit features (`features.npy`'s width, 1280; clustered like a collection of look-alike
groups), half of them "named". Timed per picture: exact search (faiss IndexFlatIP, in blocks) and
an inverted file over the named half (IndexIVFFlat, 4·√named cells, as app/vectors.py sizes the
ANN file; `nprobe` cells per query), training included; recall@k of the inverted file against exact
on a sample. The encoder's time per picture, to compare with, comes from `bench.indexing` or a
build report (docs/propagate figures).

    .venv/bin/python -m bench.propagate_cost --n 20000 100000
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

WIDTH = 1280
K = 10  # neighbours: the propagation's k and the coherence lift's k


def features(n: int, seed: int = 0) -> np.ndarray:
    """n unit rows around n/20 random centres (groups of look-alikes), float32."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(n // 20, 1), WIDTH)).astype(np.float32)
    rows = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.standard_normal((n, WIDTH)).astype(
        np.float32
    )
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def reduced(data: np.ndarray, dim: int) -> np.ndarray:
    """Unit rows of a centred PCA of the rows (fitted on a sample of 20,000), float32."""
    sample = data[: min(len(data), 20_000)]
    mean = sample.mean(axis=0)
    _, _, axes = np.linalg.svd(sample - mean, full_matrices=False)
    projected = (data - mean) @ axes[:dim].T
    unit: np.ndarray = (projected / np.linalg.norm(projected, axis=1, keepdims=True)).astype(np.float32)
    return unit


def exact(faiss: Any, data: np.ndarray, named: np.ndarray, k: int) -> tuple[np.ndarray, float]:
    """Exact k nearest named rows of every row, and the seconds it took."""
    started = time.perf_counter()
    index = faiss.IndexFlatIP(data.shape[1])
    index.add(data[named])
    _, found = index.search(data, k)
    return found, time.perf_counter() - started


def inverted(
    faiss: Any, data: np.ndarray, named: np.ndarray, k: int, nprobe: int
) -> tuple[np.ndarray, float]:
    """The inverted file's k nearest named rows of every row, and the seconds (training included)."""
    started = time.perf_counter()
    lists = max(1, int(4 * math.sqrt(len(named))))
    quantizer = faiss.IndexFlatIP(data.shape[1])
    index = faiss.IndexIVFFlat(quantizer, data.shape[1], lists, faiss.METRIC_INNER_PRODUCT)
    sample = data[named][np.random.default_rng(1).permutation(len(named))[: 40 * lists]]
    index.train(sample)
    index.add(data[named])
    index.nprobe = nprobe
    _, found = index.search(data, k)
    return found, time.perf_counter() - started


def main(argv: Sequence[str] | None = None) -> int:
    """Time both searches for each size."""
    import faiss

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, nargs="+", default=[20_000, 100_000])
    parser.add_argument("--nprobe", type=int, default=16)
    parser.add_argument("--exact-max", type=int, default=100_000, help="no exact search above this size")
    parser.add_argument(
        "--dim", type=int, default=0, help="search a centred PCA of the features (0: all 1280)"
    )
    args = parser.parse_args(argv)
    for n in args.n:
        data = features(n)
        started = time.perf_counter()
        data = reduced(data, args.dim) if args.dim else data
        pca_ms = 1000 * (time.perf_counter() - started) / n
        named = np.arange(0, n, 2)
        approx, ivf_s = inverted(faiss, data, named, K, args.nprobe)
        line = f"n={n} named={len(named)} dim={data.shape[1]} ivf_ms_per_image={1000 * ivf_s / n:.3f} "
        line += f"pca_ms_per_image={pca_ms:.3f} nprobe={args.nprobe}"
        if n <= args.exact_max:
            truth, exact_s = exact(faiss, data, named, K)
            recall = np.mean([len(set(a) & set(t)) / K for a, t in zip(approx, truth, strict=True)])
            line += f" exact_ms_per_image={1000 * exact_s / n:.3f} ivf_recall{K}={recall:.3f}"
        print("RESULT propagate_cost " + line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
