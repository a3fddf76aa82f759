"""ImageNet-1k class names in the classifiers' output order, WordNet lemmas, definitions and hierarchy."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

ARTICLES = frozenset({"a", "an", "the", "some", "two", "three", "one", "this", "that", "my", "our", "your"})
BREAKS = frozenset(
    {"with", "without", "in", "on", "of", "and", "or", "that", "is", "are", "for", "from", "at", "to", "by",
     "who", "which", "under", "over", "near", "inside", "into", "than", "like", "between", "resembling",
     "wearing", "holding", "made", "used", "called", "stands", "was", "has", "having", "usually"}
)  # fmt: skip
QUANTIFIER = re.compile(
    r"^(?:any|one|either|each|several|various|a|an) (?:of )?"
    r"(?:several|numerous|various|many|the|a|an|two|large|small)?\s*"
)
WORD = re.compile(r"[a-z][a-z'-]*")
PHRASE_END = re.compile(r"[.!?;:,(—]")
CLASS_WEIGHT = 1.0  # share of the named classes' probability in a text query's score (tune half)
LONGEST_NAME = 3  # words in the longest WordNet lemma tried against a query's noun phrase


@dataclass(frozen=True)
class ClassHint:
    """The ImageNet classes a text query names through WordNet ('a bird' → 59 bird classes), and their weight.

    app/ranking.py adds weight × the stored probability of these labels to each candidate's score.
    """

    noun: str
    labels: frozenset[str]
    weight: float = CLASS_WEIGHT


@cache
def _tables() -> dict[str, list[str]]:
    """app/data/imagenet.json: torchvision's names and timm's WordNet texts (scripts/imagenet_names.py)."""
    data: dict[str, list[str]] = json.loads(resources.files("app").joinpath("data/imagenet.json").read_text())
    return data


@cache
def imagenet_labels() -> tuple[str, ...]:
    """The 1000 ImageNet category names, index = classifier output."""
    return tuple(_tables()["labels"])


@cache
def _synonyms() -> dict[str, tuple[str, ...]]:
    """Short name → WordNet lemmas of the same class (e.g. 'tabby' → 'tabby, tabby cat')."""
    return {
        name: tuple(part.strip() for part in text.split(","))
        for name, text in zip(imagenet_labels(), _tables()["lemmas"], strict=True)
    }


@cache
def imagenet_definitions() -> tuple[str, ...]:
    """WordNet definition of each class ('sorrel' → 'a horse of a brownish orange to light brown color')."""
    return tuple(_tables()["definitions"])


@cache
def _below() -> dict[str, tuple[int, ...]]:
    """Noun lemma → ImageNet classes at or below its senses (wordnet.json, scripts/describe_tables.py)."""
    data = json.loads(resources.files("app").joinpath("data/wordnet.json").read_text())
    return {str(lemma): tuple(int(c) for c in classes) for lemma, classes in data.get("below", {}).items()}


def noun_phrase(text: str) -> list[str]:
    """Lower-case words of a text's first noun phrase, articles dropped ('A tower with a flag.' → tower)."""
    chunk: list[str] = []
    for word in words(PHRASE_END.split(text, maxsplit=1)[0]):
        if word in BREAKS and chunk:
            break
        if word not in ARTICLES:
            chunk.append(word)
    return chunk


def class_hint(text: str) -> ClassHint | None:
    """The classes the longest WordNet noun ending the text's first noun phrase names, or None.

    'Some flowers.' → flower (daisy, yellow lady's slipper); 'A sports car.' → sports car (one class);
    'an animal' → 398 classes. Plural forms are tried in the singular.
    """
    chunk, below = noun_phrase(text), _below()
    for size in range(min(LONGEST_NAME, len(chunk)), 0, -1):
        *first, last = chunk[-size:]
        for form in dict.fromkeys((last, singular(last))):
            name = " ".join([*first, form])
            if name in below:
                labels = imagenet_labels()
                return ClassHint(name, frozenset(labels[index] for index in below[name]))
    return None


def readable_label(name: str) -> str:
    """The most explicit everyday lemma containing the short name ('tabby' → 'tabby cat')."""
    lemmas = _synonyms().get(name, ())
    words = set(name.lower().split())
    candidates = [lemma for lemma in lemmas if words <= set(lemma.lower().split())]
    return max(candidates, key=len) if candidates else name


def lemma_sets() -> list[tuple[str, ...]]:
    """WordNet lemmas of each ImageNet class, in class order."""
    table = _synonyms()
    return [table.get(name, (name,)) for name in imagenet_labels()]


def words(text: str) -> list[str]:
    """Lower-case word tokens."""
    return WORD.findall(text.lower())


def singular(word: str) -> str:
    """Crude singular form, for matching nouns."""
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith("es") and word[:-2].endswith(("sh", "ch", "x", "ss")):
        return word[:-2]
    if word.endswith("s") and not word.endswith(("ss", "us", "is")) and len(word) > 3:
        return word[:-1]
    return word


def head_noun(phrase: str) -> str:
    """Last word of the first noun phrase, singular ('A floppy-eared bunny.' → 'bunny'); '' if none."""
    first = re.split(r"[.!?;:,(—]", phrase, maxsplit=1)[0]
    chunk: list[str] = []
    for word in words(first):
        if word in BREAKS and chunk:
            break
        if word not in ARTICLES:
            chunk.append(word)
    return singular(chunk[-1]) if chunk else ""


@cache
def category(name: str) -> str:
    """What kind of thing a class is, from its WordNet definition ('sorrel' → 'horse'); '' if unknown."""
    labels = imagenet_labels()
    if name not in labels:
        return ""
    definition = imagenet_definitions()[labels.index(name)]
    noun = head_noun(QUANTIFIER.sub("", definition.lower(), count=1))
    return "" if noun.endswith(("ing", "ed", "ly")) else noun
