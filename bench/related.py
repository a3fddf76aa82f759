"""bench.relevance with WordNet-related borrowed words: a query word also matches, at a lower weight, the
borrowed words that WordNet names as its synonyms or as kinds below it ("chicken" → hen, rooster, chick).

    .venv/bin/python -m bench.related --weight 0.5 --depth 2 --names mixed --split tune --short --no-fp32

Every option after this module's own goes to bench.relevance. The lever is measured here only: the
service's `Lending.parts` (app/propagation.py) is replaced in this process, and the WordNet tables come
from Debian's `wordnet-base` (scripts/wordnet.py), which the product does not ship.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from functools import cache

import numpy as np

from app import lexical, propagation
from app.propagation import DEPTH, Lending
from bench import relevance
from scripts.wordnet import WordNet, load


def _children(net: WordNet) -> dict[int, list[int]]:
    """Each noun synset's hyponyms."""
    found: dict[int, list[int]] = {}
    for synset in net.synsets.values():
        for parent in synset.hypernyms:
            found.setdefault(parent, []).append(synset.offset)
    return found


@cache
def _net() -> tuple[WordNet, dict[int, list[int]]]:
    """WordNet and its hyponym links, read once."""
    net = load()
    return net, _children(net)


@cache
def related(term: str, depth: int) -> frozenset[str]:
    """The one-word lemmas of the term's noun synsets and of their hyponyms down to `depth` steps."""
    net, children = _net()
    found: set[str] = set()
    frontier = list(net.noun_synsets(term))
    for _ in range(depth + 1):
        found.update(lemma for offset in frontier for lemma in net.synsets[offset].lemmas if " " not in lemma)
        frontier = [child for offset in frontier for child in children.get(offset, ())]
    return frozenset(found - {term})


def _base_forms(word: str) -> tuple[str, ...]:
    """A borrowed word and its WordNet base forms ("hens" → "hen")."""
    return tuple(_net()[0].base_forms(word))


def related_parts(weight: float, depth: int) -> object:
    """`Lending.parts` where a borrowed word related to a query word (`related`) covers it by `weight`."""

    def parts(
        self: Lending, query: str, allowed: np.ndarray | None = None, limit: int = DEPTH
    ) -> list[tuple[int, float]]:
        terms = lexical.content_terms(query)
        if not terms or not self.lent:
            return []
        covered: dict[int, float] = {}
        for term in terms:
            pattern = propagation._term_pattern(term)
            near = related(term, depth)
            direct = {row for word, held in self.rows_of.items() if pattern.match(word) for row in held}
            indirect = {
                row
                for word, held in self.rows_of.items()
                if near and any(form in near for form in _base_forms(word))
                for row in held
            }
            for row in direct | indirect:
                covered[row] = covered.get(row, 0.0) + (1.0 if row in direct else weight)
        found = [
            (row, self.lent[row].omega * count / len(terms))
            for row, count in covered.items()
            if allowed is None or (row < len(allowed) and allowed[row])
        ]
        found.sort(key=lambda pair: (-pair[1], pair[0]))
        return found[:limit]

    return parts


def main(argv: Sequence[str] | None = None) -> int:
    """Replace the borrowed words' matching, then run bench.relevance with the other options."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--weight", type=float, default=0.5, help="coverage of a related borrowed word")
    parser.add_argument("--depth", type=int, default=2, help="hyponym steps below the query word's synsets")
    args, rest = parser.parse_known_args(argv)
    setattr(Lending, "parts", related_parts(args.weight, args.depth))  # noqa: B010 (the bench's variant)
    print(f"borrowed words related by WordNet: weight {args.weight:g}, depth {args.depth}", flush=True)
    return relevance.main(rest)


if __name__ == "__main__":
    sys.exit(main())
