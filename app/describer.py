"""Stage 6: descriptions — one sentence that says only what the image's evidence supports.

Every content word comes from the evidence: the classifier's (or CLIP's zero-shot) labels, their WordNet
kinds (app/data/wordnet.json: "a dog" when three breeds split the probability) and, for uploads, the
reference set's captions that agree with a label. Hedging follows the probability behind the subject;
a scene or a second object appears only above its own threshold. The language model only phrases: it
ranks candidate sentences that all carry the same content, so it cannot add a word.
"""

from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources

from app.encoders.base import LanguageModel
from app.labels import imagenet_labels, readable_label, singular, words

QUERY_SHOTS: tuple[tuple[str, str], ...] = (
    ("a red car", "A shiny red car parked on a quiet street."),
    ("eiffel tower", "The Eiffel Tower rising above Paris on a clear day."),
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
# A small model drifts: keep the first clause of a generated sentence, at most MAX_WORDS words.
_CLAUSE_BREAK = re.compile(r"[,;:(!?]| and | or | but | which | that | being | as it | with its ")
_DANGLING = {"a", "an", "the", "of", "in", "on", "at", "to", "for", "with", "and", "or", "its", "their", "by"}
MAX_WORDS = 10
UNSURE = "An image the models cannot name with confidence."
# Words a sentence may use besides the evidence: articles, prepositions, conjunctions, hedges.
FUNCTION_WORDS = frozenset(
    ["a", "an", "the", "and", "or", "of", "in", "on", "at", "by", "with", "either", "probably", "perhaps",
     "likely"]
)  # fmt: skip


@cache
def _tables() -> dict[str, object]:
    """app/data/wordnet.json (scripts/describe_tables.py): kinds per class, broad kinds, scene classes."""
    data: dict[str, object] = json.loads(resources.files("app").joinpath("data/wordnet.json").read_text())
    return data


@cache
def kinds_of() -> dict[str, tuple[str, ...]]:
    """ImageNet label → its everyday kinds, nearest first ('tabby' → ('cat', 'feline', 'animal'))."""
    kinds = _tables()["kinds"]
    assert isinstance(kinds, list)
    return {label: tuple(k) for label, k in zip(imagenet_labels(), kinds, strict=True)}


@cache
def broad_kinds() -> frozenset[str]:
    """Kinds too general to stand beside a second object ('animal', 'device')."""
    broad = _tables()["broad"]
    assert isinstance(broad, list)
    return frozenset(broad)


@cache
def scenes() -> dict[str, str]:
    """Place labels → the preposition that puts a subject there ('seashore' → 'on')."""
    table = _tables()["scenes"]
    assert isinstance(table, dict)
    return {str(k): str(v) for k, v in table.items()}


@cache
def dictionary() -> frozenset[str]:
    """English words (Debian `wamerican`, shipped as app/data/words.txt.gz) for keeping text mode real."""
    raw = resources.files("app").joinpath("data/words.txt.gz").read_bytes()
    return frozenset(gzip.decompress(raw).decode().split())


def article(noun: str) -> str:
    """'a' or 'an' for a noun phrase."""
    return "an" if noun[:1].lower() in "aeiou" else "a"


def capitalised(text: str) -> str:
    """First letter upper case, ending in a full stop."""
    text = text.strip()
    if text[-1:] not in ".!?":
        text += "."
    return text[:1].upper() + text[1:]


def clean_sentence(text: str, fallback: str, known: frozenset[str] | None = None) -> str:
    """First clause of generated text, capitalised with a full stop; cut before the first unknown word."""
    text = " ".join(text.replace("\n", " ").split()).strip(" \"'")
    text = _SENTENCE_END.split(text, maxsplit=1)[0].strip()
    text = _CLAUSE_BREAK.split(text, maxsplit=1)[0].strip()
    kept: list[str] = []
    for token in text.split()[:MAX_WORDS]:
        if known is not None and not all(w in known for w in words(token.replace("-", " "))):
            break
        kept.append(token)
    while len(kept) > 2 and kept[-1].lower().strip(".") in _DANGLING:
        kept.pop()
    if len(kept) < 2 or len(set(kept)) < len(kept) / 2:
        return capitalised(fallback)
    return capitalised(" ".join(kept).rstrip(",;:- "))


def main_object(label: str) -> str:
    """A label's most explicit everyday lemma ('tabby' → 'tabby cat'; 'gorilla', not 'Gorilla gorilla')."""
    name = readable_label(label)
    parts = name.lower().split()
    return label if len(set(parts)) < len(parts) else name


@dataclass(frozen=True)
class Evidence:
    """A phrase of the sentence and what it rests on."""

    phrase: str
    source: str  # "label", "kind" (a WordNet hypernym of labels), "scene", "reference"
    labels: tuple[str, ...]
    probability: float


@dataclass(frozen=True)
class Sentence:
    """A description with the probability behind its subject and the evidence of each phrase."""

    text: str
    confidence: float
    evidence: list[Evidence] = field(default_factory=list)


@dataclass(frozen=True)
class Thresholds:
    """Probabilities at which the describer names, hedges or adds (chosen on the Tux Paint tune half)."""

    name: float = 0.5  # the top label alone: "A tabby cat."
    kind: float = 0.2  # labels sharing a kind: "A dog."
    hedge: float = 0.1  # below `name`: "Probably a frog." / "A frog or a toad."
    alternative: float = 0.5  # second label at least this fraction of the top one → "X or Y"
    scene: float = 0.3  # "… on a seashore."
    second: float = 0.3  # "… and a bicycle."
    reference: float = 0.5  # weight of the reference set's agreeing captions (grid: docs/relevance.md)


def _mass(labels: list[tuple[str, float]], kind: str) -> tuple[float, tuple[str, ...]]:
    """Total probability of the labels of a kind, and those labels."""
    members = [(label, p) for label, p in labels if kind in kinds_of().get(label, ())]
    return sum(p for _, p in members), tuple(label for label, _ in members)


def _agreement(label_words: set[str], references: list[tuple[str, float]]) -> float:
    """Weight of the reference captions whose words name the label or its kind."""
    return sum(w for caption, w in references if {singular(t) for t in words(caption)} & label_words)


class Describer:
    """Evidence → candidate sentences (same content, different phrasing) → the language model's pick."""

    def __init__(
        self, lm: LanguageModel | None, max_new_tokens: int = 20, thresholds: Thresholds | None = None
    ) -> None:
        self.lm = lm
        self.max_new_tokens = max_new_tokens
        self.thresholds = thresholds or Thresholds()

    def subject(
        self, labels: list[tuple[str, float]], references: list[tuple[str, float]]
    ) -> tuple[list[str], list[Evidence], float]:
        """Phrasings of the main object, their evidence and confidence; no phrasing when nothing is sure."""
        t = self.thresholds
        agreeing = [
            (
                p + t.reference * _agreement({singular(w) for w in words(main_object(label))}, references),
                label,
            )
            for label, p in labels
        ]
        support, top = max(agreeing, key=lambda pair: pair[0])  # the label the reference set backs, if any
        p = dict(labels)[top]
        name = main_object(top)
        evidence = [Evidence(name, "label", (top,), p)]
        if support > p:
            evidence.append(Evidence(name, "reference", (top,), support - p))
        kind = next((k for k in kinds_of().get(top, ()) if k not in broad_kinds()), "")
        kind = "" if kind in words(name) else kind
        if kind:
            evidence.append(Evidence(kind, "kind", (top,), p))
        said = f"{article(name)} {name}" + (f", a kind of {kind}" if kind else "")
        if support >= t.name:
            return [said], evidence, min(support, 1.0)
        found = self.kind(labels, references)
        if found is not None:
            return found
        if support < t.hedge:
            return [], [], support
        if top == labels[0][0] and len(labels) > 1 and labels[1][1] >= max(t.hedge, t.alternative * p):
            other = main_object(labels[1][0])
            if other != name:
                evidence = [Evidence(name, "label", (top,), p)]
                evidence.append(Evidence(other, "label", (labels[1][0],), labels[1][1]))
                both = f"{article(name)} {name} or {article(other)} {other}"
                return [both, f"either {both}"], evidence, p
        return [f"{hedge} {said}" for hedge in ("probably", "likely")], evidence, support

    def kind(
        self, labels: list[tuple[str, float]], references: list[tuple[str, float]]
    ) -> tuple[list[str], list[Evidence], float] | None:
        """'A dog' when labels of one kind (plus agreeing reference captions) are likely together, with
        the likeliest of them hedged when it is itself likely enough: 'A dog, probably a beagle'."""
        t = self.thresholds
        ordered = [k for label, _ in labels for k in kinds_of().get(label, ())]
        for kind in sorted(dict.fromkeys(ordered), key=lambda k: k in broad_kinds()):  # specific kinds first
            mass, members = _mass(labels, kind)
            agree = t.reference * _agreement({kind}, references)
            if mass + agree < t.kind or (kind in broad_kinds() and mass < t.name):
                continue
            evidence = [Evidence(kind, "kind", members, mass)]
            if agree:
                evidence.append(Evidence(kind, "reference", members, agree))
            phrase = f"{article(kind)} {kind}"
            ranked = sorted((dict(labels)[m], m) for m in members)[::-1]
            p, best = ranked[0]
            name = main_object(best)
            clear = len(ranked) == 1 or p >= 2 * ranked[1][0]  # not when fine classes disagree
            if p >= t.hedge and clear and name != kind:
                evidence.append(Evidence(name, "label", (best,), p))
                return [f"{phrase}, probably {article(name)} {name}"], evidence, min(mass + agree, 1.0)
            return [phrase], evidence, min(mass + agree, 1.0)
        return None

    def extras(self, labels: list[tuple[str, float]], used: set[str]) -> tuple[list[str], list[Evidence]]:
        """Clauses for a confident scene and a confident second object (each above its threshold)."""
        t = self.thresholds
        clauses: list[str] = []
        evidence: list[Evidence] = []
        used_kinds = {k for label in used for k in kinds_of().get(label, ()) if k not in broad_kinds()}
        for label, p in labels:
            if label in used:
                continue
            if label in scenes() and p >= t.scene and not any(e.source == "scene" for e in evidence):
                place = "mountain" if "mountain" in kinds_of().get(label, ()) else readable_label(label)
                clauses.append(f"{scenes()[label]} {article(place)} {place}")
                evidence.append(Evidence(place, "scene", (label,), p))
            elif label not in scenes() and p >= t.second and not any(e.source == "label" for e in evidence):
                if used_kinds & set(kinds_of().get(label, ())):
                    continue  # an alternative to the subject, not a second object
                name = main_object(label)
                clauses.append(f"and {article(name)} {name}")
                evidence.append(Evidence(name, "label", (label,), p))
        return clauses, evidence

    def describe(
        self, labels: list[tuple[str, float]], references: list[tuple[str, float]] | None = None
    ) -> Sentence:
        """One sentence from (label, probability) pairs, most likely first, and reference captions."""
        if not labels:
            return Sentence("An image.", 0.0)
        subjects, evidence, confidence = self.subject(labels, references or [])
        if not subjects:
            return Sentence(UNSURE, confidence)
        used = {label for e in evidence for label in e.labels}
        clauses, more = self.extras(labels, used)
        if clauses:  # an apposition ('a sorrel, a kind of horse') closes before the clauses
            subjects = [f"{s}," if "," in s else s for s in subjects]
        candidates = [capitalised(" ".join([s, *clauses])) for s in subjects]
        if clauses and len(clauses) == 2:  # the object before the place reads better at times
            candidates += [capitalised(" ".join([s, clauses[1], clauses[0]])) for s in subjects]
        return Sentence(self.pick(candidates), confidence, evidence + more)

    def pick(self, candidates: list[str]) -> str:
        """The candidate the language model finds most fluent (the first one without a model)."""
        if len(candidates) == 1 or self.lm is None:
            return candidates[0]
        scores = self.lm.score(candidates)
        return max(zip(scores, candidates, strict=True), key=lambda pair: pair[0])[1]

    def from_query(self, query: str) -> str:
        """Text mode (generated text): a sentence about a picture matching the query, real words only."""
        query = " ".join(query.split())[:200]
        fallback = f"A picture of {query}"
        if self.lm is None:
            return capitalised(fallback)
        if self.lm.is_chat:
            messages = [
                {
                    "role": "system",
                    "content": "Describe in one short sentence a picture that matches the request.",
                }
            ]
            for request, caption in QUERY_SHOTS:
                messages.append({"role": "user", "content": request})
                messages.append({"role": "assistant", "content": caption})
            messages.append({"role": "user", "content": query})
            text = self.lm.generate(messages, self.max_new_tokens)
        else:
            shots = "".join(f"Request: {r}\nDescription: {c}\n\n" for r, c in QUERY_SHOTS)
            text = self.lm.generate(f"{shots}Request: {query}\nDescription:", self.max_new_tokens)
        return clean_sentence(text, fallback, dictionary() | frozenset(words(query)))
