"""The names users gave the people of an index (app/people.py), to find in a query as whole words."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class NameMention:
    """A person's name found in a text: where, and whom it names."""

    start: int
    end: int
    person: str  # the person's id
    name: str  # the name as the user gave it


def _key(name: str) -> str:
    """A name compared in any case, blanks collapsed."""
    return " ".join(name.split()).casefold()


class NameMatcher:
    """Finds the names of people in a text: whole words, in any case, the longest name first."""

    def __init__(self, named: Iterable[tuple[str, str]]) -> None:
        self._people: dict[str, tuple[str, str]] = {}  # folded name → (id, name as given)
        for person, name in named:
            if _key(name):
                self._people.setdefault(_key(name), (person, " ".join(name.split())))
        names = sorted(self._people, key=len, reverse=True)
        spelled = "|".join(r"\s+".join(re.escape(word) for word in name.split()) for name in names)
        self._pattern = re.compile(rf"(?<!\w)(?:{spelled})(?!\w)", re.IGNORECASE) if names else None

    def __len__(self) -> int:
        return len(self._people)

    def find(self, text: str) -> list[NameMention]:
        """Every name of a person in the text, in order (none overlapping)."""
        if self._pattern is None:
            return []
        found = []
        for match in self._pattern.finditer(text):
            person = self._people.get(_key(match.group()))
            if person is not None:
                found.append(NameMention(match.start(), match.end(), *person))
        return found
