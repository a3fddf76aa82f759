"""What the classifier saw, at each level of the WordNet hierarchy, in the words a person uses.

Each concept a description may name (app/data/wordnet.json, scripts/describe_tables.py) is a class under
its everyday name ("polar bear") or a kind above classes ("cat", "bird", "animal"); its mass is the summed
probability of the classes at or below it, plus the weight of the nearest reference pictures whose
caption's noun is that concept or a kind below it. A description names the most specific concept whose
mass passes its threshold. Articles, plurals and mass nouns follow `inflect` and the table's mass nouns.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import numpy as np

from app.labels import head_noun, imagenet_labels


@dataclass(frozen=True)
class Concept:
    """A nameable concept: its name, the classes at or below it, whether it is a broad kind."""

    name: str
    classes: tuple[int, ...]
    broad: bool = False


@dataclass(frozen=True)
class Seen:
    """A concept with the probability the classifier gave it and the weight the reference set lent it."""

    concept: Concept
    mass: float
    votes: float = 0.0
    labels: tuple[str, ...] = ()  # the likeliest labels at or below it
    near_name: float = 0.0  # the weight the picture's bridged vector lends it (near its name in text space)

    @property
    def support(self) -> float:
        """The evidence for it: classifier mass plus reference votes and the text vote, at most 1."""
        return min(self.mass + self.votes + self.near_name, 1.0)


@cache
def _tables() -> dict[str, Any]:
    """app/data/wordnet.json."""
    data: dict[str, Any] = json.loads(resources.files("app").joinpath("data/wordnet.json").read_text())
    return data


@cache
def class_names() -> tuple[str, ...]:
    """The name a person uses for each ImageNet class, in classifier order ('ice bear' → 'polar bear')."""
    return tuple(_tables()["names"])


@cache
def _engine() -> Any:
    """inflect's engine (articles, plurals)."""
    import inflect

    return inflect.engine()


@cache
def mass_nouns() -> frozenset[str]:
    """Names that take no article ('food', 'hay')."""
    return frozenset(_tables()["mass"])


def takes_no_article(name: str) -> bool:
    """A mass noun or a plural ('jeans', 'mashed potatoes', 'cattle')."""
    head = name.split()[-1].lower()
    if name.lower() in mass_nouns() or head in mass_nouns():
        return True
    single = _engine().singular_noun(head)
    return bool(single) and single != head and not head.endswith(("ss", "us", "is"))


def warm() -> None:
    """Read the word tables and import inflect now (seconds: typeguard instruments inflect as it is
    imported), so that the first description is as fast as the next."""
    with_article("owl")
    class_names()


def with_article(name: str) -> str:
    """The name as a noun phrase: 'an owl', 'a unicorn', 'food', 'jeans'."""
    return name if takes_no_article(name) else str(_engine().a(name))


class Hierarchy:
    """The concepts over a classifier's labels, and their masses for one label distribution."""

    def __init__(self, labels: list[str]) -> None:
        self.labels = list(labels)
        self.index = {label: i for i, label in enumerate(self.labels)}
        imagenet = tuple(labels) == imagenet_labels()
        if imagenet:
            table = _tables()
            self.concepts = [
                Concept(str(c["name"]), tuple(int(i) for i in c["classes"]), bool(c["broad"]))
                for c in table["concepts"]
            ]
            self.votes = {str(noun): tuple(int(i) for i in found) for noun, found in table["votes"].items()}
        else:  # another classifier's labels: each label alone, no kinds, no votes
            self.concepts = [Concept(label, (i,)) for i, label in enumerate(self.labels)]
            self.votes = {}
        self.matrix = np.zeros((len(self.concepts), len(self.labels)), dtype=np.float32)
        for row, concept in enumerate(self.concepts):
            self.matrix[row, list(concept.classes)] = 1.0
        self.size = self.matrix.sum(axis=1)
        # above[r, c] = 1 when concept c is concept r or under it (its classes are among r's).
        outside = self.matrix @ (1.0 - self.matrix).T
        self.above = (outside.T == 0).astype(np.float32)

    def spread(self, direct: np.ndarray) -> np.ndarray:
        """Weight per concept from weights given to concepts directly: each concept gets its own and
        that of every concept under it."""
        spread: np.ndarray = self.above @ direct.astype(np.float32)
        return spread

    def distribution(self, labels: list[tuple[str, float]]) -> np.ndarray:
        """Probability per class from (label, probability) pairs (labels not listed get none)."""
        p = np.zeros(len(self.labels), dtype=np.float32)
        for label, probability in labels:
            if label in self.index:
                p[self.index[label]] = probability
        return p

    def voted(self, references: list[tuple[str, float]]) -> np.ndarray:
        """Weight per concept of the reference captions whose noun is it or a kind below it."""
        weights = np.zeros(len(self.concepts), dtype=np.float32)
        for caption, weight in references:
            for row in self.votes.get(head_noun(caption), ()):
                weights[row] += weight
        return weights

    def seen(
        self,
        labels: list[tuple[str, float]],
        references: list[tuple[str, float]],
        reference_weight: float,
        near_name: np.ndarray | None = None,
    ) -> list[Seen]:
        """Every concept with any evidence, most specific first (fewest classes, then most support);
        `near_name` is the text vote per concept."""
        masses = self.matrix @ self.distribution(labels)
        votes = reference_weight * self.voted(references)
        said = np.zeros_like(votes) if near_name is None else near_name.astype(np.float32)
        total = masses + votes + said
        rows = np.flatnonzero(total > 0)
        ranked = rows[np.lexsort((-total[rows], self.size[rows]))]
        top = [(self.index[label], label) for label, q in sorted(labels, key=lambda pair: -pair[1])[:5]
               if q > 0 and label in self.index]  # fmt: skip
        return [
            Seen(
                self.concepts[row],
                float(masses[row]),
                float(votes[row]),
                tuple(label for i, label in top if self.matrix[row, i]),
                float(said[row]),
            )
            for row in ranked
        ]

    def kind_above(self, concept: Concept) -> Concept | None:
        """The nearest specific kind above a concept whose name it does not already say ('bolete' →
        fungus; 'tabby cat' → none, as it says 'cat')."""
        mine, said = set(concept.classes), set(concept.name.lower().split())
        above = [
            other
            for other in self.concepts
            if not other.broad and mine < set(other.classes) and not set(other.name.lower().split()) & said
        ]
        return min(above, key=lambda other: len(other.classes), default=None)

    def related(self, concept: Concept) -> set[int]:
        """The classes sharing a specific (not broad) kind with the concept: its alternatives."""
        mine = set(concept.classes)
        found = set(mine)
        for other in self.concepts:
            if not other.broad and len(other.classes) > 1 and mine & set(other.classes):
                found.update(other.classes)
        return found


@cache
def scenes() -> dict[str, str]:
    """Place labels → the preposition that puts a subject there ('seashore' → 'on')."""
    return {str(k): str(v) for k, v in _tables()["scenes"].items()}


def below(inner: Concept, outer: Concept) -> bool:
    """Whether a concept is a strictly more specific one under the other."""
    return inner.classes != outer.classes and set(inner.classes) <= set(outer.classes)
