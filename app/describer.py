"""Stage 6: descriptions — the image's top labels composed into one sentence by a language model."""

from __future__ import annotations

import re

from app.encoders.base import LanguageModel
from app.labels import category, readable_label

SYSTEM = (
    "Write a short literal caption naming the objects listed, most likely first. Do not add anything else."
)
SHOTS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("golden retriever", "tennis ball"), "A golden retriever with a tennis ball."),
    (("pizza", "plate"), "A pizza on a plate."),
    (("mountain bike",), "A mountain bike."),
    (("lighthouse", "seashore"), "A lighthouse by the sea."),
)
QUERY_SHOTS: tuple[tuple[str, str], ...] = (
    ("a red car", "A shiny red car parked on a quiet street."),
    ("eiffel tower", "The Eiffel Tower rising above Paris on a clear day."),
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s")
# A small model drifts once it leaves the labels: keep the first clause, at most MAX_WORDS words.
_CLAUSE_BREAK = re.compile(r"[,;:(!?]| and | or | but | which | that | being | as it | with its ")
_DANGLING = {"a", "an", "the", "of", "in", "on", "at", "to", "for", "with", "and", "or", "its", "their", "by"}
MAX_WORDS = 10


def article(noun: str) -> str:
    """'a' or 'an' for a noun phrase."""
    return "An" if noun[:1].lower() in "aeiou" else "A"


def clean_sentence(text: str, fallback: str) -> str:
    """First sentence of the model's text, capitalised and ending in a full stop; fallback when degenerate."""
    text = " ".join(text.replace("\n", " ").split()).strip(" \"'")
    text = _SENTENCE_END.split(text, maxsplit=1)[0].strip()
    text = _CLAUSE_BREAK.split(text, maxsplit=1)[0].strip()
    kept = text.split()[:MAX_WORDS]
    while len(kept) > 2 and kept[-1].lower().strip(".") in _DANGLING:
        kept.pop()
    text = " ".join(kept)
    words = text.split()
    if len(words) < 2 or len(set(words)) < len(words) / 2:
        text = fallback
    if text[-1:] not in ".!?":
        text = text.rstrip(",;:- ") + "."
    return text[:1].upper() + text[1:]


def pick_labels(labels: list[tuple[str, float]], max_labels: int = 3, ratio: float = 0.1) -> list[str]:
    """Readable names of the likely labels: at most `max_labels`, each at least `ratio` of the top one."""
    if not labels:
        return []
    top = labels[0][1]
    names: list[str] = []
    for label, score in labels[:max_labels]:
        name = readable_label(label)
        if score >= ratio * top and name not in names:
            names.append(name)
    return names


def main_object(label: str) -> str:
    """The noun phrase a description starts with: readable name, plus its kind when one word says little."""
    name = readable_label(label)
    kind = category(label)
    if kind and " " not in name and kind not in name.lower():
        return f"{name} {kind}"  # 'sorrel' → 'sorrel horse', 'daisy' → 'daisy plant'
    return name


class Describer:
    """Socratic composition: classifier labels → prompt → language model → one clean sentence."""

    def __init__(self, lm: LanguageModel, max_new_tokens: int = 20) -> None:
        self.lm = lm
        self.max_new_tokens = max_new_tokens

    def from_labels(self, labels: list[tuple[str, float]]) -> str:
        """One sentence describing an image from its (label, probability) list, most likely first."""
        names = pick_labels(labels)
        if not names:
            return "An image."
        subject = main_object(labels[0][0])
        prefix = f"{article(subject)} {subject}"
        fallback = prefix + (f" and {article(names[1]).lower()} {names[1]}" if len(names) > 1 else "")
        if self.lm.is_chat:
            messages = [{"role": "system", "content": SYSTEM}]
            for shot_labels, caption in SHOTS:
                messages.append({"role": "user", "content": "Objects: " + ", ".join(shot_labels)})
                messages.append({"role": "assistant", "content": caption})
            messages.append({"role": "user", "content": "Objects: " + ", ".join(names)})
            continuation = self.lm.generate(messages, self.max_new_tokens, prefix=prefix)
        else:
            shots = "".join(f"Objects: {', '.join(ls)}\nCaption: {c}\n\n" for ls, c in SHOTS)
            prompt = f"{shots}Objects: {', '.join(names)}\nCaption: "
            continuation = self.lm.generate(prompt, self.max_new_tokens, prefix=prefix)
        return clean_sentence(prefix + continuation, fallback)

    def from_query(self, query: str) -> str:
        """The original design's text mode: a one-sentence description of a picture matching the query."""
        query = " ".join(query.split())[:200]
        fallback = f"A picture of {query}"
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
        return clean_sentence(text, fallback)
