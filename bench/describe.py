"""Description quality on the Tux Paint stamps: BLEU-4, CIDEr, cosine, object hits, degenerate outputs."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from app.bridge import BridgeParams
from app.describer import Describer
from app.labels import head_noun, lemma_sets, singular, words
from app.pipeline import Pipeline
from app.preprocessing import decode
from app.registry import make_bridge, prepare
from app.settings import Settings
from scripts.tuxpaint import BENCH_CACHE, collect, fetch_stamps, split_of

log = logging.getLogger("bench.describe")


@dataclass(frozen=True)
class Sample:
    """One scored description."""

    path: str
    reference: str
    description: str


def names_object(description: str, noun: str, synonyms: dict[str, set[str]]) -> bool:
    """Whether the description names the noun, or a word that shares an ImageNet synonym set with it."""
    said = {singular(w) for w in words(description)}
    if not noun:
        return False
    return noun in said or bool(synonyms.get(noun, set()) & said)


def degenerate(description: str) -> bool:
    """Empty, too short, not ending as a sentence, or repeating itself."""
    tokens = words(description)
    if len(tokens) < 2 or description.strip()[-1:] not in ".!?":
        return True
    trigrams = [tuple(tokens[i : i + 3]) for i in range(len(tokens) - 2)]
    if len(trigrams) != len(set(trigrams)):
        return True
    return any(tokens[i] == tokens[i + 1] for i in range(len(tokens) - 1))


def word_synonyms() -> dict[str, set[str]]:
    """Single word → other single words sharing an ImageNet synonym set with it ('bunny' ↔ 'rabbit')."""
    table: dict[str, set[str]] = {}
    for lemmas in lemma_sets():
        heads = {singular(words(lemma)[-1]) for lemma in lemmas if words(lemma)}
        for head in heads:
            table.setdefault(head, set()).update(heads - {head})
    return table


def score(samples: list[Sample], cosines: np.ndarray) -> dict[str, float]:
    """All metrics over the samples, in percent except BLEU/CIDEr (0–1 and 0–10 scales)."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider

    references = {str(i): [" ".join(words(s.reference))] for i, s in enumerate(samples)}
    candidates = {str(i): [" ".join(words(s.description)) or "empty"] for i, s in enumerate(samples)}
    bleu = Bleu(4).compute_score(references, candidates, verbose=0)[0][3]
    cider = Cider().compute_score(references, candidates)[0]
    synonyms = word_synonyms()
    hits = [names_object(s.description, head_noun(s.reference), synonyms) for s in samples]
    return {
        "hit": 100 * float(np.mean(hits)),
        "cider": float(cider),
        "bleu4": float(bleu),
        "cos": float(np.mean(cosines)),
        "degenerate": 100 * float(np.mean([degenerate(s.description) for s in samples])),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--split", choices=["tune", "report", "all"], default="report")
    parser.add_argument("--cache-dir", type=Path, default=BENCH_CACHE)
    parser.add_argument("--limit", type=int, default=None, help="first N images of the split only")
    parser.add_argument("--show", type=int, default=15, help="print this many examples")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Describe every image of the split, score, print examples, the table and the RESULT line."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    started = time.perf_counter()
    settings = Settings()
    stamps = fetch_stamps(args.cache_dir.expanduser())
    selected = [s for s in collect(stamps, None) if args.split in ("all", split_of(s.caption))][: args.limit]
    models = prepare(settings, "packaged")
    assert models.lm is not None
    pipeline = Pipeline(models, make_bridge(models, BridgeParams(), settings.cache_dir))
    describer = Describer(models.lm, settings.describe_max_new_tokens)
    samples: list[Sample] = []
    for stamp in selected:
        labels = pipeline.encode_images([decode(stamps / stamp.path)]).labels[0]
        samples.append(Sample(stamp.path, stamp.caption, describer.from_labels(labels)))
    described = models.text.encode([s.description for s in samples])
    reference = models.text.encode([s.reference for s in samples])
    metrics = score(samples, (described * reference).sum(axis=1))
    for sample in samples[: args.show]:
        print(f"{sample.reference!r:45.45} → {sample.description!r}")
    print(f"split={args.split} images={len(samples)} seconds={time.perf_counter() - started:.0f}")
    print(
        f"RESULT describe hit={metrics['hit']:.1f} cider={metrics['cider']:.3f} bleu4={metrics['bleu4']:.3f} "
        f"cos={metrics['cos']:.3f} degenerate={metrics['degenerate']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
