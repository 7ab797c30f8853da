"""The two things every part of the wording pool shares: a :class:`Wording` (an instruction's text and
where it goes), a :class:`Found` user turn (split into its instruction and its data, so that another
wording can take the instruction's place), and the word n-grams that the filters and measures count.

Guarantee: ``Found.render(Wording(found.instruction, ...))`` with the found position gives the user turn
back exactly as it was; the data part is never rewritten, only the instruction and its position.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

POSITIONS = ("before", "after")
_TOKEN = re.compile(r"<[^<>\s]+>|\w+")


@dataclass(frozen=True)
class Wording:
    """One instruction wording. ``position``: before or after the data (None: where the row has it)."""

    text: str
    source: str  # none | one | file | rules | paraphrase | negative
    position: str | None = None
    register: str = ""
    length: str = ""
    cut: bool = False  # a paraphrase that the generation budget cut short


@dataclass(frozen=True)
class Found:
    """A user turn split as ``lead + core + trail``, where ``core`` is the instruction and the data
    joined by ``joiner`` in the order ``position`` says. ``movable=False``: the instruction sits inside
    the turn (no data part of its own), so a wording replaces it in place and keeps its position."""

    instruction: str
    data: str
    position: str
    joiner: str = "\n\n"
    lead: str = ""
    trail: str = ""
    movable: bool = True

    def render(self, wording: Wording) -> str:
        """The user turn with ``wording`` in the instruction's place (the data unchanged)."""
        position = (wording.position or self.position) if self.movable else self.position
        # moved to the other side, an empty joiner would glue the wording to the data
        joiner = self.joiner if position == self.position else (self.joiner or "\n\n")
        if not self.data:
            core = wording.text
        elif position == "before":
            core = f"{wording.text}{joiner}{self.data}"
        else:
            core = f"{self.data}{joiner}{wording.text}"
        return f"{self.lead}{core}{self.trail}"


def tokens(text: str) -> list[str]:
    """Lower-cased words; a special token such as ``<sep>`` is one word."""
    return _TOKEN.findall(text.lower())


def normalized(text: str) -> str:
    """The text as the duplicate filter compares it: lower-cased words, punctuation and spacing dropped."""
    return " ".join(tokens(text))


def ngrams(text: str, n: int) -> frozenset[tuple[str, ...]]:
    """The word n-grams of ``text`` (its words as one n-gram when it has fewer than ``n``)."""
    words = tokens(text)
    if len(words) < n:
        return frozenset([tuple(words)]) if words else frozenset()
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def overlap(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    """Jaccard overlap of two n-gram sets (1.0: the same n-grams)."""
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)
