"""Offline replay of the description dev set: each picture is encoded once (every label's probability,
the 10 nearest reference captions, the nearest reference cosine, the picture's looks, the bridged
text-space vector) and cached; describers with other settings are then run on the same inputs and judged
by bench/describe_dev.py in seconds.

`python -m bench.describe_replay [--grid]`: the figures of the default describer (and, with --grid, of a
sweep of the naming levers), one line each; `RESULT describe-replay {...}` last.
"""

from __future__ import annotations

import argparse
import itertools
import json
import pickle
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from app import looks
from app.bridge import DEFAULT_TEMPLATES, BridgeParams, label_vectors
from app.describer import Describer, Sight, Thresholds
from app.pipeline import Pipeline
from app.preprocessing import decode, stack
from app.registry import make_bridge, prepare
from app.settings import Settings
from bench.describe_dev import DevItem, dev_set, gives_up, grammar_slips, names_object, wrong_objects
from scripts.tuxpaint import BENCH_CACHE

CACHE = "describe-replay.pkl"
NEIGHBOURS = 30  # reference neighbours kept per picture (the replay re-weights the first k of them)


def encode(items: list[DevItem], settings: Settings) -> list[dict[str, Any]]:
    """What the upload path computes for each picture, once."""
    models = prepare(settings, "packaged", with_lm=False)
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
    bridge, p = pipeline.bridge, pipeline.bridge.params
    assert bridge.references is not None
    found: list[dict[str, Any]] = []
    for item in items:
        image = decode(item.data)
        pixels = stack([pipeline.preprocess(image)])
        output = pipeline.run_encoder(pixels)
        probs = bridge.probabilities(output)[0].numpy().astype(np.float32)
        features = torch.nn.functional.normalize(output.features, dim=-1)[0]
        labels = bridge.top_labels(output, len(bridge.labels))[0]
        nearest = float(bridge.references.neighbours(features[None], 1)[0][0, 0])
        references = bridge.references.captions_near(features, p.reference_k, p.reference_temperature)
        scores, rows = bridge.references.neighbours(features[None], NEIGHBOURS)
        near = [(bridge.references.captions[int(bridge.references.caption_of[int(r)])], float(c))
                for c, r in zip(scores[0], rows[0], strict=True)]  # fmt: skip
        vector = bridge.to_text_space(output)[0]
        seen = looks.of(image, nearest, labels)
        found.append({"name": item.name, "probs": probs, "labels": labels, "references": references,
                      "nearest": nearest, "near": near, "looks": seen, "vector": vector})  # fmt: skip
    return found


def cached(items: list[DevItem], folder: Path) -> list[dict[str, Any]]:
    """The encoded set, from the cache when it holds the same pictures."""
    path = folder / CACHE
    if path.is_file():
        data: list[dict[str, Any]] = pickle.loads(path.read_bytes())
        if [d["name"] for d in data] == [i.name for i in items]:
            return data
    data = encode(items, Settings())
    path.write_bytes(pickle.dumps(data))
    return data


def references(encoded: dict[str, Any], k: int, temperature: float) -> list[tuple[str, float]]:
    """The first k cached reference neighbours, softmax-weighted by cosine as the service weights them."""
    near = encoded["near"][:k]
    scores = np.array([c for _, c in near]) / temperature
    weights = np.exp(scores - scores.max())
    return [(caption, float(w)) for (caption, _), w in zip(near, weights / weights.sum(), strict=True)]


@dataclass(frozen=True)
class Trial:
    """One describer setting to replay."""

    name: str
    thresholds: Thresholds
    k: int = 10
    temperature: float = 0.05


def figures(
    describer: Describer, trial: Trial, encoded: list[dict[str, Any]], items: list[DevItem]
) -> dict[str, float]:
    """Names the object, says a wrong object, gives up (%) and grammar slips of one describer."""
    describer.thresholds = trial.thresholds
    texts = [
        describer.describe(
            Sight(e["labels"], references(e, trial.k, trial.temperature), e["looks"], vector=e["vector"])
        ).text
        for e in encoded
    ]
    n, pairs = len(texts), list(zip(texts, items, strict=True))
    return {
        "names": round(100 * sum(names_object(t, i) for t, i in pairs) / n, 2),
        "wrong": round(100 * sum(bool(wrong_objects(t, i)) for t, i in pairs) / n, 2),
        "gives_up": round(100 * sum(gives_up(t) for t in texts) / n, 2),
        "slips": float(sum(bool(grammar_slips(t)) for t in texts)),
    }


def main(argv: list[str]) -> int:
    """Replay the default describer (and a grid of levers) on the cached dev set."""
    parser = argparse.ArgumentParser(prog="bench.describe_replay")
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--templates", choices=["name", "bridge"], default="name", help="texts of the names")
    parser.add_argument("--grid", choices=["", "text", "references", "thresholds", "hedge"], default="")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    items = dev_set(args.cache_dir)
    encoded = cached(items, args.cache_dir.expanduser())
    describer = Describer(None)
    text = prepare(Settings(), "packaged", with_lm=False).text
    names = [c.name for c in describer.hierarchy.concepts]
    templates = ("{}",) if args.templates == "name" else DEFAULT_TEMPLATES
    describer.concept_vectors = label_vectors(text, names, templates, None)
    results: dict[str, dict[str, float]] = {}
    for trial in trials(args.grid):
        results[trial.name] = figures(describer, trial, encoded, items)
        print(f"{trial.name:70} {results[trial.name]}", flush=True)
    print(f"images={len(items)} seconds={time.perf_counter() - started:.0f}")
    print("RESULT describe-replay " + json.dumps(results))
    return 0


def trials(grid: str) -> list[Trial]:
    """The default describer, main's (no text vote, 10 neighbours) and the grid asked for."""
    base = Thresholds()
    main = replace(base, text=0.0, hedge=0.1)  # main's describer: no text vote, hedge at 0.1
    tried = [Trial("main (37d88be)", main), Trial("text vote alone", replace(main, text=base.text)),
             Trial("this branch", base)]  # fmt: skip
    if grid == "text":
        for text, temperature in itertools.product((0.1, 0.2, 0.3, 0.5), (0.01, 0.02, 0.05)):
            t = replace(base, text=text, text_temperature=temperature)
            tried.append(Trial(f"text={text} temperature={temperature}", t))
    if grid == "references":
        for weight, k, temperature in [
            *itertools.product((0.15, 0.3, 0.5, 0.8), (5, 10, 20), (0.05,)),
            *itertools.product((0.3, 0.5), (10,), (0.02, 0.1)),
        ]:
            tried.append(Trial(f"reference={weight} k={k} temperature={temperature}",
                               replace(base, reference=weight), k, temperature))  # fmt: skip
    if grid == "hedge":
        for text, hedge in itertools.product((0.3, 0.4, 0.5), (0.12, 0.13, 0.15)):
            tried.append(Trial(f"text={text} hedge={hedge}", replace(base, text=text, hedge=hedge)))
    if grid == "thresholds":
        for name, hedge in itertools.product((0.25, 0.3, 0.35), (0.08, 0.1, 0.15)):
            tried.append(Trial(f"name={name} hedge={hedge}", replace(base, name=name, hedge=hedge)))
    return tried


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
