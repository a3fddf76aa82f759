"""Two checks of bench/propagate.py: how far a word planted at random spreads, and propagation's ceiling."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

import numpy as np

from bench.propagation import Fusion, Spread, coherence, fuse, lift, propagate
from bench.relevance import KS, recall, subsets

if TYPE_CHECKING:
    from bench.propagate import Collection, Staging

GATES: tuple[tuple[float | None, str], ...] = (
    (None, "pairwise"),
    (0.0, "pairwise"),
    (0.05, "pairwise"),
    (0.1, "pairwise"),
    (1.5, "lift"),
    (2.0, "lift"),
)
NOISE_WORD = "holiday"  # planted on a hashed third of the named rows: a folder of unrelated pictures


def noise_check(collection: Collection, stage: Staging) -> None:
    """Print how far a word planted on unrelated pictures spreads under each gate, beside real words."""
    planted = [
        (names | {NOISE_WORD}, rest)
        if (names or rest) and hashlib.sha256(source.encode()).digest()[0] % 3 == 0
        else (names, rest)
        for (names, rest), source in zip(stage.words_of, collection.sources, strict=True)
    ]
    everything = [names | rest for names, rest in planted]
    pairwise, lifted = coherence(collection.features, everything), lift(collection.features, everything)
    carriers = sum(NOISE_WORD in words for words in everything)
    print(
        f"noise check ({stage.name}): '{NOISE_WORD}' planted on {carriers} named rows at random: "
        f"pairwise coherence {pairwise[NOISE_WORD]:.3f}, lift {lifted[NOISE_WORD]:.2f}"
    )
    for word in ("flowers", "birds", "animals", "cartoon", "food"):
        if word in pairwise:
            print(f"  '{word}': pairwise {pairwise[word]:.3f}, lift {lifted[word]:.2f}")
    for coherent, statistic in GATES:
        lent = propagate(collection.features, planted, Spread(coherent=coherent, statistic=statistic))
        spread = sum(NOISE_WORD in b.words | b.other for b in lent.values())
        print(f"  gate {statistic}≥{coherent}: {spread} of {len(lent)} borrowing rows borrow '{NOISE_WORD}'")


def oracle(collection: Collection, stage: Staging, texts: list[str]) -> None:
    """Print the unnamed subset's R@1 / R@10 if each relevant unnamed picture got, in full, the lexical gain
    of its best lexically matching named neighbour among its k nearest (from a cosine on): a ceiling for
    any propagation of names, since the real thing also lifts the wrong look-alikes."""
    unnamed = subsets(texts, collection.relevant, stage.named)["unnamed"]
    lenders = np.asarray([row for row, (names, rest) in enumerate(stage.words_of) if names or rest])
    for k, floor in ((1, 0.5), (3, 0.5), (10, -1.0), (len(lenders), -1.0)):
        ranking = {}
        for text in unnamed:
            hits = {hit.row: hit for hit in stage.hits[text]}
            best = max((hit.bm25 for hit in hits.values()), default=0.0)
            extra: dict[int, float] = {}
            for row, source in enumerate(collection.sources):
                if text not in collection.relevant[source] or best <= 0:
                    continue
                similar = collection.features[lenders] @ collection.features[row]
                near = [int(lenders[i]) for i in np.argsort(-similar)[:k] if similar[i] >= floor]
                gains = [2.0 * hits[j].coverage ** 2 * hits[j].bm25 / best for j in near if j in hits]
                if gains:
                    extra[row] = max(gains)
            rows = [row for row, _ in fuse(collection.vector[text], stage.hits[text], extra, Fusion())]
            ranking[text] = [collection.sources[row] for row in rows[: max(KS)]]
        found = recall(ranking, collection.relevant)
        print(
            f"oracle ({stage.name}, unnamed, k={k}, cos≥{floor:g}): R@1 {found[1]:.1f}, R@10 {found[10]:.1f}"
        )
