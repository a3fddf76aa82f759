"""A small reader of the WordNet 3.0 database files in Debian's `wordnet-base` (nouns in full, other parts
of speech as word lists): synonyms, hypernyms and base forms, for the describer's tables and the bench."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from scripts.tuxpaint import BENCH_CACHE, fetch_package

FOLDER = Path("usr/share/wordnet")
# WordNet's detachment rules (morph.c) for nouns and verbs.
NOUN_RULES = (("s", ""), ("ses", "s"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
              ("men", "man"), ("ies", "y"))  # fmt: skip
VERB_RULES = (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"),
              ("ing", ""))  # fmt: skip


@dataclass(frozen=True)
class Synset:
    """One noun synset: its lemmas (spaces, lower case) and the offsets of its hypernyms."""

    offset: int
    lemmas: tuple[str, ...]
    hypernyms: tuple[int, ...]


@dataclass
class WordNet:
    """Noun synsets with their hypernyms, and the lemma lists of every part of speech."""

    synsets: dict[int, Synset] = field(default_factory=dict)
    noun_index: dict[str, tuple[int, ...]] = field(default_factory=dict)
    verbs: set[str] = field(default_factory=set)
    modifiers: set[str] = field(default_factory=set)  # adjectives and adverbs
    exceptions: dict[str, str] = field(default_factory=dict)  # irregular forms → base form

    @classmethod
    def read(cls, folder: Path) -> WordNet:
        """Parse data.noun, the four index files and the noun/verb exception lists."""
        net = cls()
        for line in (folder / "data.noun").read_text(encoding="latin-1").splitlines():
            if line.startswith(" "):
                continue
            fields = line.split(" | ", 1)[0].split()
            count = int(fields[3], 16)
            lemmas = tuple(fields[4 + 2 * i].lower().replace("_", " ") for i in range(count))
            rest = fields[4 + 2 * count :]
            pointers = int(rest[0])
            hypernyms = tuple(int(rest[2 + 4 * i]) for i in range(pointers) if rest[1 + 4 * i] in ("@", "@i"))
            net.synsets[int(fields[0])] = Synset(int(fields[0]), lemmas, hypernyms)
        for pos in ("noun", "verb", "adj", "adv"):
            for line in (folder / f"index.{pos}").read_text(encoding="latin-1").splitlines():
                if line.startswith(" "):
                    continue
                fields = line.split()
                lemma = fields[0].replace("_", " ")
                if pos == "noun":
                    net.noun_index[lemma] = tuple(int(x) for x in fields[-int(fields[2]) :])
                else:
                    (net.verbs if pos == "verb" else net.modifiers).add(lemma)
        for pos in ("noun", "verb", "adj"):
            for line in (folder / f"{pos}.exc").read_text(encoding="latin-1").splitlines():
                inflected, base, *_ = line.split()
                net.exceptions.setdefault(inflected.replace("_", " "), base.replace("_", " "))
        return net

    def base_forms(self, word: str) -> list[str]:
        """The word and every base form WordNet's rules give ('mice' → 'mouse', 'grazing' → 'graze')."""
        word = word.lower()
        forms = [word]
        if word in self.exceptions:
            forms.append(self.exceptions[word])
        for suffix, ending in NOUN_RULES + VERB_RULES:
            if word.endswith(suffix) and len(word) > len(suffix) + 1:
                forms.append(word[: len(word) - len(suffix)] + ending)
        return list(dict.fromkeys(forms))

    def noun_synsets(self, word: str) -> tuple[int, ...]:
        """Offsets of every noun synset of the word or of its base forms."""
        found: list[int] = []
        for form in self.base_forms(word):
            found.extend(self.noun_index.get(form, ()))
        return tuple(dict.fromkeys(found))

    def is_word(self, word: str) -> bool:
        """Whether WordNet knows the word (any part of speech, after removing inflection)."""
        lemmas = (self.noun_index, self.verbs, self.modifiers)
        return any(form in known for form in self.base_forms(word) for known in lemmas)

    def names_a_thing(self, word: str) -> bool:
        """A noun or verb (an object, place or action) that is never an adjective or adverb."""
        forms = self.base_forms(word)
        if any(form in self.modifiers for form in forms):
            return False
        return any(form in self.noun_index or form in self.verbs for form in forms)

    def depth(self, offset: int) -> int:
        """Steps from the synset up to the root of its hierarchy (longest path)."""
        return max(self.ancestors(offset).values())

    def ancestors(self, offset: int) -> dict[int, int]:
        """Every hypernym of a synset (itself included) with its distance in steps, nearest first."""
        distance = {offset: 0}
        frontier = [offset]
        while frontier:
            following: list[int] = []
            for current in frontier:
                for parent in self.synsets[current].hypernyms:
                    if parent not in distance:
                        distance[parent] = distance[current] + 1
                        following.append(parent)
            frontier = following
        return distance


@cache
def load(cache_dir: Path = BENCH_CACHE) -> WordNet:
    """WordNet from Debian's `wordnet-base`, fetched with apt-get on first use."""
    return WordNet.read(fetch_package("wordnet-base", cache_dir.expanduser()) / FOLDER)


@cache
def dictionary(cache_dir: Path = BENCH_CACHE) -> frozenset[str]:
    """Lower-case words of Debian's `wamerican` (/usr/share/dict/american-english)."""
    root = fetch_package("wamerican", cache_dir.expanduser())
    text = (root / "usr/share/dict/american-english").read_text(encoding="utf-8", errors="replace")
    return frozenset(line.strip().lower() for line in text.splitlines() if line.strip())
