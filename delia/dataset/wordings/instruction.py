"""Finding the instruction in a chat dataset's user turns, apart from the data it comes with.

How (the first that applies):
- ``dataset.format=instruction``: the instruction column; the input column is data and is never rewritten;
- ``dataset.instruction.pattern``: a regular expression (``.`` matches newlines) that matches the whole
  user turn, with a named group ``instruction`` and, optionally, ``data``: without a data group a wording
  replaces the instruction where it stands (its position cannot change);
- ``dataset.instruction.column``: a column of the row that holds the row's instruction, as the user turn
  has it (at its start, its end, or inside it);
- ``dataset.instruction.sentence``: the instruction, the same for every row;
- otherwise, found automatically: the longest run of whole sentences (or lines) that begins or ends the
  user turns of at least ``dataset.instruction.min_share`` of the rows (and of two rows at least).

Guarantee: a row is *matched* only when its user turn is rebuilt exactly from the instruction and the
data (:meth:`delia.dataset.wordings.base.Found.render`); an unmatched row is left as it is and counted.
The instruction is looked for in the first user turn of a row.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig

from delia.dataset.wordings.base import Found, Wording
from delia.infra.errors import DeliaError
from delia.infra.types import Record

_BOUNDARY = re.compile(r"(?<=[.!?])\s+|\n\s*")  # a sentence end or a line break
MAX_SENTENCES = 6  # the runs of sentences at either end of a turn that the automatic finder compares
MARK = (
    "mark the instruction with dataset.instruction.sentence='<its text>', "
    "dataset.instruction.pattern='(?P<data>.*)\\n\\n(?P<instruction>.*)' or dataset.instruction.column=<column>"
)


@dataclass(frozen=True)
class Located:
    """Each record's first user turn split (None: not matched), and how the instruction was found."""

    found: list[Found | None]
    how: str

    @property
    def matched(self) -> int:
        return sum(f is not None for f in self.found)


def first_user(messages: list[dict[str, str]]) -> int | None:
    return next((i for i, m in enumerate(messages) if m["role"] == "user"), None)


def user_turn(record: Record) -> str | None:
    index = first_user(record["messages"])
    return None if index is None else record["messages"][index]["content"]


def split_known(content: str, text: str) -> Found | None:
    """``content`` split around the instruction ``text``: at its start, its end, or inside it."""
    text = text.strip()
    body = content.strip()
    if not text or text not in body:
        return None
    lead, trail = content[: len(content) - len(content.lstrip())], content[len(content.rstrip()) :]
    if body == text:
        return Found(text, "", "before", "", lead, trail)
    if body.startswith(text):
        rest = body[len(text) :]
        data = rest.lstrip()
        if _glued(text[-1], rest[:1]):
            return None
        return Found(text, data, "before", rest[: len(rest) - len(data)], lead, trail)
    if body.endswith(text):
        rest = body[: -len(text)]
        data = rest.rstrip()
        if _glued(rest[-1:], text[0]):
            return None
        return Found(text, data, "after", rest[len(data) :], lead, trail)
    start = body.find(text)
    end = start + len(text)
    if _glued(body[start - 1 : start], text[0]) or _glued(text[-1], body[end : end + 1]):
        return None
    return Found(text, "", "before", "", lead + body[:start], body[end:] + trail, movable=False)


def _glued(left: str, right: str) -> bool:
    """Whether two characters are inside one word (the instruction would be part of a longer word)."""
    return bool(left) and bool(right) and left.isalnum() and right.isalnum()


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``dataset.instruction.pattern`` compiled; a bad one is a one-line error naming the option."""
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as err:
        raise DeliaError(
            f"dataset.instruction.pattern={pattern!r}: not a regular expression ({err}); quote it on the "
            f"command line, e.g. \"dataset.instruction.pattern='(?P<data>.*)\\n\\n(?P<instruction>.*)'\""
        ) from None
    if "instruction" not in compiled.groupindex:
        raise DeliaError(
            f"dataset.instruction.pattern={pattern!r} has no group named instruction: write it as "
            f"(?P<instruction>...) (and the data as (?P<data>...))"
        )
    return compiled


def split_pattern(content: str, pattern: re.Pattern[str]) -> Found | None:
    """``content`` split by the named groups of ``pattern`` (which must match the whole turn)."""
    match = pattern.fullmatch(content)
    if match is None or match.group("instruction") is None:
        return None
    start, end = match.span("instruction")
    instruction = match.group("instruction")
    if not instruction.strip():
        return None
    if "data" not in pattern.groupindex or match.group("data") is None:
        return Found(instruction, "", "before", "", content[:start], content[end:], movable=False)
    d_start, d_end = match.span("data")
    data = match.group("data")
    if start < d_start:
        return Found(instruction, data, "before", content[end:d_start], content[:start], content[d_end:])
    return Found(instruction, data, "after", content[d_end:start], content[:d_start], content[end:])


def shared_sentence(turns: list[str], min_share: float) -> tuple[str, int] | None:
    """The longest run of whole sentences that begins or ends most of ``turns``, with how many share it."""
    counts: Counter[str] = Counter()
    for turn in turns:
        counts.update(set(_end_runs(turn)))
    if not counts:
        return None
    text, count = max(counts.items(), key=lambda item: (item[1], len(item[0])))
    needed = max(2, math.ceil(min_share * len(turns)))
    return (text, count) if count >= needed else None


def _end_runs(turn: str) -> list[str]:
    """The runs of up to :data:`MAX_SENTENCES` whole sentences (or lines) at the start and at the end of
    ``turn``, each leaving some text (the data) beside it."""
    body = turn.strip()
    cuts = [(m.start(), m.end()) for m in _BOUNDARY.finditer(body)]
    runs = [body[:start].strip() for start, end in cuts[:MAX_SENTENCES] if body[end:].strip()]
    runs += [body[end:].strip() for start, end in cuts[-MAX_SENTENCES:] if body[:start].strip()]
    return [run for run in runs if run]


def locate(records: list[Record], cfg: DictConfig) -> Located:
    """Split each record's first user turn into instruction and data, as ``dataset.*`` says (see the
    module docstring)."""
    turns = [user_turn(r) for r in records]
    options: Any = cfg.get("instruction") or {}
    if cfg.get("format") == "instruction":
        return Located(_by_text(records, turns), "the instruction column")
    if options.get("pattern"):
        pattern = compile_pattern(str(options.pattern))
        found = [split_pattern(t, pattern) if t is not None else None for t in turns]
        return Located(found, "dataset.instruction.pattern")
    if options.get("column"):
        return Located(_by_text(records, turns), f"the column '{options.column}'")
    if options.get("sentence"):
        sentence = str(options.sentence)
        return Located(
            [split_known(t, sentence) if t is not None else None for t in turns],
            "dataset.instruction.sentence",
        )
    shared = shared_sentence([t for t in turns if t is not None], float(options.get("min_share", 0.5)))
    if shared is None:
        return Located([None] * len(records), "no sentence that the user turns share")
    sentence, _ = shared
    found = [split_known(t, sentence) if t is not None else None for t in turns]
    return Located(found, f"the sentence the user turns share: {sentence!r}")


def _by_text(records: list[Record], turns: list[str | None]) -> list[Found | None]:
    """Each turn split around its record's own instruction text (``instruction_text``)."""
    return [
        split_known(t, r["instruction_text"]) if t is not None and r.get("instruction_text") else None
        for r, t in zip(records, turns, strict=True)
    ]


def own_wordings(located: Located) -> list[Wording]:
    """The dataset's own instruction wordings, the most used first (ties: the first seen first)."""
    counts = Counter(f.instruction for f in located.found if f is not None)
    order = {text: i for i, text in reversed(list(enumerate(f.instruction for f in located.found if f)))}
    ranked = sorted(counts, key=lambda text: (-counts[text], order[text]))
    return [Wording(text, "none") for text in ranked]


def refuse_unmatched(located: Located, asked: str, path: str, rows: int) -> None:
    """A run that needs the instruction (``asked``) and matched no row stops here, in one line."""
    if located.matched == 0:
        raise DeliaError(
            f"{asked} needs the instruction of each user turn, but dataset.path={path}: 0 of {rows} rows "
            f"matched ({located.how}); {MARK}"
        )
