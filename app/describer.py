"""Stage 6: descriptions — one sentence that names what the picture shows at the level its evidence is
sure of, in the words a person uses, and nothing the evidence does not support.

The subject is the most specific concept (app/concepts.py: a class, or a kind above classes) whose
summed probability, with the reference set's agreeing captions, passes the threshold: "A cat." when five
cat classes share the mass, "A bird, probably an owl." when most of the bird's mass is an owl's, "An
animal." rather than nothing. A hedge ("Probably a frog.", "A frog or a toad.") when only a weaker
threshold is passed; the give-up sentence only when no concept passes that. The medium and a dominant
colour (app/looks.py) lead the sentence when their evidence is clear; a scene or a second object follows
only above its own threshold. Every word is backed by an `Evidence` item.

Text mode writes one sentence for a query: the query itself, as a noun phrase, starts the sentence; the
language model may add a few words, which are kept only when they are plain dictionary words that invent
no one and nothing (no names, people, numbers or quoted text), else the sentence ends after the query.
"""

from __future__ import annotations

import gzip
import re
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib import resources

import numpy as np

from app.concepts import Hierarchy, Seen, below, class_names, scenes, takes_no_article, with_article
from app.encoders.base import LanguageModel
from app.labels import imagenet_labels, words
from app.looks import Look
from app.places import Place

UNSURE = "An image the models cannot name with confidence."
# Words a sentence may use besides the evidence: articles, prepositions, conjunctions, hedges.
FUNCTION_WORDS = frozenset(
    ["a", "an", "the", "and", "or", "of", "in", "on", "at", "by", "with", "either", "probably", "perhaps",
     "likely", "picture", "something", "models", "cannot", "name", "confidence", "kind"]
)  # fmt: skip
QUERY_SHOTS: tuple[tuple[str, str], ...] = (
    ("a red car", "A red car parked on a quiet street."),
    ("an old lighthouse at sunset", "An old lighthouse at sunset by the sea."),
)
TEXT_TOKENS = 8  # new tokens text mode lets the language model add after the query
MAX_QUERY = 200
# A continuation stops at a clause boundary; the words before it are kept.
_CLAUSE_BREAK = re.compile(r"[,;:(!?.\"“”]| and | or | but | which | that | while | as | so ")
_DANGLING = {"a", "an", "the", "of", "in", "on", "at", "to", "for", "with", "and", "or", "its", "their", "by",
             "is", "are", "was", "from", "into", "under", "over", "near"}  # fmt: skip
# Words that would invent someone or something the query does not name.
INVENTING = frozenset(
    ["he", "she", "his", "her", "him", "hers", "i", "me", "my", "mine", "we", "us", "our", "you", "your",
     "they", "them", "their", "man", "woman", "men", "women", "boy", "girl", "child", "children", "kid",
     "kids", "baby", "people", "person", "family", "friend", "friends", "named", "called", "brand",
     "logo", "reads", "says", "sign", "text", "mother", "father", "mom", "dad", "wife", "husband",
     "son", "daughter", "owner", "year", "years", "old", "aged", "age", "one", "two", "three", "four",
     "five", "six", "seven", "eight", "nine", "ten"]
)  # fmt: skip
# Words that may follow the query's noun phrase: prepositions and a few verbs of posture (participles too).
STARTERS = frozenset({"in", "on", "at", "by", "with", "under", "over", "near", "beside", "against", "through",
                      "along", "across", "behind", "inside", "from", "during", "among", "above", "below",
                      "around", "next", "sits", "stands", "lies", "rests"})  # fmt: skip
DETERMINERS = frozenset({"a", "an", "the", "some", "this", "that", "these", "those", "my", "your", "our",
                         "his", "her", "their", "its", "many", "several", "few", "no", "every",
                         "each"})  # fmt: skip


@cache
def dictionary() -> frozenset[str]:
    """English words (Debian `wamerican`, shipped as app/data/words.txt.gz) for keeping text mode real."""
    raw = resources.files("app").joinpath("data/words.txt.gz").read_bytes()
    return frozenset(gzip.decompress(raw).decode().split())


def capitalised(text: str) -> str:
    """First letter upper case, ending in a full stop."""
    text = text.strip()
    if text[-1:] not in ".!?":
        text += "."
    return text[:1].upper() + text[1:]


@dataclass(frozen=True)
class Evidence:
    """A phrase of the sentence and what it rests on."""

    phrase: str
    # "label", "kind" (labels sharing a WordNet kind), "scene", "reference", "text" (the picture's bridged
    # vector near the concept's name), "pixels", "index"
    source: str
    labels: tuple[str, ...]
    probability: float


@dataclass(frozen=True)
class Sentence:
    """A description with the probability behind its subject and the evidence of each phrase."""

    text: str
    confidence: float
    evidence: list[Evidence] = field(default_factory=list)


@dataclass(frozen=True)
class Sight:
    """Everything a description of one picture may rest on."""

    labels: list[tuple[str, float]]  # the label distribution (every label; an older index: its stored top-k)
    references: list[tuple[str, float]] = field(default_factory=list)  # nearest reference captions, weights
    looks: tuple[Look, ...] = ()  # medium and colour, from the picture (app/looks.py)
    # What the index knows about the image beyond its pixels (the text read in it, its place and date):
    # a Look of kind "medium" here (a "document" when text was read) wins over the picture's own.
    known: tuple[Look, ...] = ()
    # The picture's bridged vector in the text encoder's space (app/bridge.py), for the text vote.
    vector: np.ndarray | None = None


@dataclass(frozen=True)
class Thresholds:
    """Probabilities at which the describer names, hedges or adds (chosen on the description dev set)."""

    name: float = 0.3  # a concept this sure is named: "A cat."
    broad: float = 0.45  # a broad kind needs more: "An animal."
    hedge: float = 0.12  # below `name`: "Perhaps a frog." / "A frog or a toad."
    probably: float = 0.3  # …from this support on "Probably a frog."
    refine: float = 0.4  # share of the subject's support a finer concept needs: "A bird, probably an owl."
    alternative: float = 0.5  # second concept at least this fraction of the first → "X or Y"
    scene: float = 0.3  # "… on a beach."
    second: float = 0.3  # "… and a bicycle."
    reference: float = 0.3  # weight of the reference set's agreeing captions
    text: float = 0.3  # weight of the text vote: the bridged vector against the concepts' names
    text_temperature: float = 0.02  # softmax temperature of that vote's cosines


@dataclass(frozen=True)
class Subject:
    """What the sentence names: its phrase, its hedged form, the concepts in it and their evidence."""

    phrase: str  # "a bird, probably an owl" / "a frog or a toad"
    hedged: bool  # "probably a frog": the medium goes first ("a photo, probably of a frog")
    named: tuple[Seen, ...]
    evidence: list[Evidence]
    confidence: float


def _evidence(seen: Seen) -> list[Evidence]:
    """A named concept's evidence: its labels (or kind) and the reference captions that agree."""
    source = "label" if len(seen.concept.classes) == 1 else "kind"
    found = [Evidence(seen.concept.name, source, seen.labels, round(seen.mass, 4))]
    if seen.votes > 0:
        found.append(Evidence(seen.concept.name, "reference", seen.labels, round(seen.votes, 4)))
    if seen.near_name > 0.01:
        found.append(Evidence(seen.concept.name, "text", seen.labels, round(seen.near_name, 4)))
    return found


class Describer:
    """Evidence → the concept the evidence is sure of → one sentence in plain words."""

    def __init__(
        self,
        lm: LanguageModel | None,
        max_new_tokens: int = TEXT_TOKENS,
        thresholds: Thresholds | None = None,
        labels: list[str] | None = None,
    ) -> None:
        self.lm = lm
        self.max_new_tokens = min(max_new_tokens, TEXT_TOKENS)
        self.thresholds = thresholds or Thresholds()
        self.labels = list(labels) if labels is not None else list(imagenet_labels())
        self.hierarchy = Hierarchy(self.labels)
        self.imagenet = tuple(self.labels) == imagenet_labels()
        # Unit text embeddings of the concepts' names (rows as self.hierarchy.concepts), for the text vote.
        self.concept_vectors: np.ndarray | None = None

    def concept_names(self) -> list[str]:
        """The concepts' names, in the order of `concept_vectors`' rows (what the text vote embeds)."""
        return [concept.name for concept in self.hierarchy.concepts]

    def text_votes(self, sight: Sight) -> np.ndarray | None:
        """Per concept, the weight the picture's bridged vector lends it: a softmax over the cosines with
        the concepts' names, each concept also getting the votes of those under it."""
        t = self.thresholds
        if sight.vector is None or self.concept_vectors is None or t.text <= 0:
            return None
        cosines = self.concept_vectors @ np.asarray(sight.vector, dtype=np.float32)
        scaled = np.exp((cosines - cosines.max()) / t.text_temperature)
        return t.text * self.hierarchy.spread(scaled / scaled.sum())

    def name_of(self, label: str) -> str:
        """The name a person uses for a label ('ice bear' → 'polar bear')."""
        return class_names()[self.hierarchy.index[label]] if self.imagenet else label

    def subject(self, sight: Sight) -> Subject | None:
        """The most specific concept the evidence is sure of (refined, or hedged); None when none is."""
        t = self.thresholds
        seen = self.hierarchy.seen(sight.labels, sight.references, t.reference, self.text_votes(sight))
        sure = [s for s in seen if s.support >= (t.broad if s.concept.broad else t.name)]
        if sure:
            first = self._descend(sure)
            least = max(t.hedge, t.refine * first.support)
            finer = [s for s in seen if below(s.concept, first.concept) and s.support >= least]
            if not finer:
                return self._named(first, seen, hedged=False)
            phrase = f"{with_article(first.concept.name)}, probably {with_article(finer[0].concept.name)}"
            named = (first, finer[0])
            return Subject(phrase, False, named, [e for s in named for e in _evidence(s)], first.support)
        likely = [s for s in seen if s.support >= (t.broad if s.concept.broad else t.hedge)]
        if not likely:
            return None
        first = likely[0]
        others = [
            s
            for s in likely[1:]
            if not set(s.concept.classes) & set(first.concept.classes)
            and not s.concept.broad
            and s.support >= t.alternative * first.support
        ]
        if others:
            named = (first, others[0])
            phrase = f"{with_article(first.concept.name)} or {with_article(others[0].concept.name)}"
            return Subject(phrase, False, named, [e for s in named for e in _evidence(s)], first.support)
        return self._named(first, seen, hedged=True)

    def _descend(self, sure: list[Seen]) -> Seen:
        """From the surest of the most general sure concepts, down to the surest concept below that holds
        at least `refine` of it, while there is one ('animal' → 'cat'; not on to 'tabby cat' when five
        cats share the mass)."""
        roots = [s for s in sure if not any(below(s.concept, other.concept) for other in sure)]
        current = max(roots, key=lambda s: s.support)
        while True:
            least = self.thresholds.refine * current.support
            inner = [s for s in sure if below(s.concept, current.concept) and s.support >= least]
            if not inner:
                return current
            current = max(inner, key=lambda s: (s.support, -len(s.concept.classes)))

    def _named(self, seen: Seen, everything: list[Seen], hedged: bool) -> Subject:
        """One concept; a class with the kind it belongs to when its name does not say it ('a bolete, a
        kind of fungus')."""
        phrase, evidence = with_article(seen.concept.name), _evidence(seen)
        kind = self.hierarchy.kind_above(seen.concept) if len(seen.concept.classes) == 1 else None
        if kind is not None:
            above = next((s for s in everything if s.concept == kind), seen)
            phrase += f", a kind of {kind.name}"
            evidence.append(Evidence(kind.name, "kind", above.labels, round(above.mass, 4)))
        return Subject(phrase, hedged, (seen,), evidence, seen.support)

    def extras(self, sight: Sight, subject: Subject) -> tuple[list[str], list[Evidence]]:
        """Clauses for a confident scene and a confident second object (each above its threshold)."""
        t = self.thresholds
        taken = {c for s in subject.named for c in s.concept.classes}
        related = {c for s in subject.named for c in self.hierarchy.related(s.concept)}
        clauses: list[str] = []
        evidence: list[Evidence] = []
        for label, p in sight.labels:
            index = self.hierarchy.index.get(label)
            if index is None or index in taken:
                continue
            if label in scenes() and p >= t.scene and not any(e.source == "scene" for e in evidence):
                place = self.name_of(label)
                clauses.append(f"{scenes()[label]} {with_article(place)}")
                evidence.append(Evidence(place, "scene", (label,), p))
            elif label not in scenes() and p >= t.second and not any(e.source == "label" for e in evidence):
                if index in related:
                    continue  # an alternative to the subject, not a second object
                name = self.name_of(label)
                clauses.append(f"and {with_article(name)}")
                evidence.append(Evidence(name, "label", (label,), p))
        return clauses, evidence

    @staticmethod
    def framing(sight: Sight) -> tuple[str, list[Evidence]]:
        """'black-and-white photo' / 'mostly red drawing' / 'picture' (a colour alone) / '' and evidence."""
        media = [look for look in (*sight.known, *sight.looks) if look.kind == "medium"]
        medium = media[0] if media else None
        colour = next((look for look in sight.looks if look.kind == "colour"), None)
        chosen = [look for look in (colour, medium) if look is not None]
        evidence = [Evidence(look.phrase, look.source, (), round(look.score, 4)) for look in chosen]
        if not chosen:
            return "", []
        return " ".join([*(look.phrase for look in chosen), *([] if medium else ["picture"])]), evidence

    def describe(self, sight: Sight) -> Sentence:
        """One sentence from what was seen: framing, subject, then a scene or a second object."""
        if not sight.labels:
            return Sentence("An image.", 0.0)
        frame, framed = self.framing(sight)
        subject = self.subject(sight)
        if subject is None:
            confidence = max((s.support for s in self.hierarchy.seen(sight.labels, [], 0.0)), default=0.0)
            if frame:
                text = f"{with_article(frame)} of something the models cannot name with confidence"
                return Sentence(capitalised(text), confidence, framed)
            return Sentence(UNSURE, confidence)
        clauses, more = self.extras(sight, subject)
        phrase = subject.phrase + ("," if clauses and "," in subject.phrase else "")
        hedge = "probably" if subject.confidence >= self.thresholds.probably else "perhaps"
        if frame and subject.hedged:
            head = f"{with_article(frame)}, {hedge} of {phrase}"
        elif frame:
            head = f"{with_article(frame)} of {phrase}"
        else:
            head = f"{hedge} {phrase}" if subject.hedged else phrase
        candidates = [capitalised(" ".join([head, *clauses]))]
        if len(clauses) == 2:  # the object before the place reads better at times
            candidates.append(capitalised(" ".join([head, clauses[1], clauses[0]])))
        return Sentence(self.pick(candidates), subject.confidence, framed + subject.evidence + more)

    def pick(self, candidates: list[str]) -> str:
        """The candidate the language model finds most fluent (the first one without a model)."""
        if len(candidates) == 1 or self.lm is None:
            return candidates[0]
        scores = self.lm.score(candidates)
        return max(zip(scores, candidates, strict=True), key=lambda pair: pair[0])[1]

    def from_query(self, query: str) -> str:
        """Text mode: one sentence about a picture matching the query, keeping every word of it."""
        phrase = noun_phrase_of(" ".join(query.split())[:MAX_QUERY].rstrip(" .!?"))
        start = capitalised(phrase)[:-1]
        if self.lm is None:
            return completed(phrase, "")
        if self.lm.is_chat:
            messages = [{"role": "system", "content": "Describe a photo in one short sentence."}]
            for request, caption in QUERY_SHOTS:
                messages += [{"role": "user", "content": request}, {"role": "assistant", "content": caption}]
            messages.append({"role": "user", "content": query})
            text = self.lm.generate(messages, self.max_new_tokens, prefix=start)
        else:
            shots = "".join(f"Request: {r}\nDescription: {c}\n\n" for r, c in QUERY_SHOTS)
            text = self.lm.generate(
                f"{shots}Request: {query}\nDescription:", self.max_new_tokens, prefix=" " + start
            )
        return completed(phrase, checked_tail(text, query))


def completed(phrase: str, tail: str) -> str:
    """The sentence: the query's phrase and the checked words after it; a phrase of one or two words with
    nothing after it is framed as a photo of it ('A photo of sunflowers.')."""
    if not tail and len(phrase.split()) < 3:
        return capitalised(f"a photo of {phrase}")
    return capitalised(phrase + tail)


def noun_phrase_of(query: str) -> str:
    """The query as a noun phrase that can start a sentence: 'dog in the snow' → 'a dog in the snow'."""
    tokens = query.split()
    if not tokens:
        return "a picture"
    first = tokens[0].lower()
    if first in DETERMINERS or first[:1].isdigit() or first in INVENTING:
        return query
    head = re.split(r"\b(?:with|in|on|at|by|of|under|over|near|and|from|playing|sitting|riding|walking)\b",
                    query, maxsplit=1)[0].split()  # fmt: skip
    head = _before_participle(head)
    noun = head[-1] if head else tokens[0]
    return query if takes_no_article(noun) else with_article(query)


def _before_participle(head: list[str]) -> list[str]:
    """The words before a past participle that closes the noun phrase ('mountains reflected' →
    'mountains'; 'a car parked'): its last word, after another, ending in -ed (not -bed, -eed)."""
    last = head[-1].lower() if len(head) > 1 else ""
    if len(last) > 4 and last.endswith("ed") and not last.endswith(("bed", "eed")):
        return head[:-1]
    return head


def checked_tail(text: str, query: str) -> str:
    """The words the language model added, up to the first clause break or word that would invent (a
    name, a person, a number, quoted text, a word no dictionary has); '' when fewer than two are left."""
    text = " ".join(text.replace("\n", " ").split())
    text = _CLAUSE_BREAK.split(" " + text, maxsplit=1)[0]
    asked = set(words(query))
    known = dictionary() | asked
    kept: list[str] = []
    for token in text.split():
        plain = token.strip(".,;:!?'\"")
        lower = plain.lower()
        if not plain or not plain.replace("-", "").isalpha() or (plain[:1].isupper() and lower not in asked):
            break
        if not kept and not (lower in STARTERS or lower.endswith(("ing", "ed"))):
            break  # a phrase that cannot follow a noun phrase ('a cheetah', 'she')
        if (lower in INVENTING and lower not in asked) or not all(
            w in known for w in words(lower.replace("-", " "))
        ):
            break
        kept.append(lower)
    while kept and kept[-1] in _DANGLING:
        kept.pop()
    if len(kept) < 2 or len(set(kept)) < len(kept):
        return ""
    return " " + " ".join(kept)


DOCUMENT_WORDS = 12  # text of this many words or more makes the picture a document ("A document headed …")
HEADING_WORDS = 6  # the words of its first line quoted at most


def with_text(sentence: Sentence, text: str | None) -> Sentence:
    """The sentence with the text read in the picture, quoted from its first line, never paraphrased:
    "A document headed 'RECEIPT'." (a page of text), "A photo of a shop, with the words 'Golden Dragon'."."""
    lines = [" ".join(line.split()) for line in (text or "").splitlines() if line.strip()]
    if not lines:
        return sentence
    heading = " ".join(lines[0].split()[:HEADING_WORDS])
    quoted = Evidence(heading, "index", (), 1.0)
    if sum(len(line.split()) for line in lines) >= DOCUMENT_WORDS:
        return Sentence(
            f"A document headed '{heading}'.", 1.0, [Evidence("document", "index", (), 1.0), quoted]
        )
    return Sentence(
        f"{sentence.text.rstrip(' .')}, with the words '{heading}'.",
        sentence.confidence,
        [*sentence.evidence, quoted],
    )


def with_people(sentence: Sentence, names: list[str]) -> Sentence:
    """The sentence with the people a user named whose faces the index found in the picture, never a
    guess: "A photo of two people on a beach, with Alice and Bob." Nothing is added for no name."""
    names = [name for name in names if name]
    if not names:
        return sentence
    listed = names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"
    known = [Evidence(name, "index", (), 1.0) for name in names]
    return Sentence(
        f"{sentence.text.rstrip(' .')}, with {listed}.", sentence.confidence, [*sentence.evidence, *known]
    )


def when_and_where(sentence: Sentence, place: Place | None, taken: datetime | None) -> Sentence:
    """The sentence with where and when the index says the picture was taken (its GPS position named,
    its camera's date): "A dog on a beach, taken in Florence, Italy, in July 2019." Nothing else is added."""
    where = ", ".join(name for name in (place.city, place.country) if name) if place is not None else ""
    when = taken.strftime("%B %Y") if taken is not None else ""
    if not where and not when:
        return sentence
    clause = "taken" + (f" in {where}" if where else "") + ("," if where and when else "")
    clause += f" in {when}" if when else ""
    text = f"{sentence.text.rstrip(' .')}, {clause}."
    known = [Evidence(phrase, "index", (), 1.0) for phrase in (where, when) if phrase]
    return Sentence(text, sentence.confidence, [*sentence.evidence, *known])
