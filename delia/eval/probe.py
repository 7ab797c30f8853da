"""A small general-knowledge probe: short questions with accepted answers, to measure retention.

Ask a model every question before and after tuning (``probe_messages``), score its replies with
``is_correct`` and compare the two ``probe_accuracy`` values: a drop is forgetting.

Probe files are JSONL, one question a line::

    {"id": "gk001", "question": "What is the capital of France?", "answers": ["Paris"]}

``answers`` lists the accepted aliases. The built-in probe (``load_probe()`` or ``"builtin"``) holds
60 questions on geography, science, history, arithmetic, language and everyday facts.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from delia.infra.errors import DeliaError, where
from delia.infra.jsonl import read_jsonl

BUILTIN = "builtin"
BUILTIN_FILE = "knowledge_probe.jsonl"
INSTRUCTION = "Answer with a few words only. "
ARTICLES = frozenset({"a", "an", "the"})
LINE_FORMAT = 'each line is {"id": "...", "question": "...", "answers": ["...", ...]}'

# "1,000" -> "1000" (a comma between a digit and a group of exactly three digits).
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}(?!\d))")
# Runs of letters and digits; a decimal point inside a number stays, so "3.7" is one word, not "3" and "7".
_WORD = re.compile(r"[^\W_]+(?:(?<=\d)\.\d+)*")


@dataclass(frozen=True)
class ProbeItem:
    """One probe question and the answers accepted for it."""

    id: str
    question: str
    answers: tuple[str, ...]


def normalize(text: str) -> str:
    """Lower-case words without accents, punctuation or articles, joined by single spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(char for char in decomposed if not unicodedata.combining(char))
    words = _WORD.findall(_THOUSANDS.sub("", plain.casefold()))
    return " ".join(word for word in words if word not in ARTICLES)


def _text_field(obj: dict[str, Any], field: str, path: Path, line: int) -> str:
    value = obj.get(field)
    if not isinstance(value, str) or not value.strip():
        got = "missing" if value is None else f"got {value!r}"
        raise DeliaError(f"{where(path, line, field)}: expected a non-empty string ({got}); {LINE_FORMAT}")
    return value.strip()


def _answers_field(obj: dict[str, Any], path: Path, line: int) -> tuple[str, ...]:
    value = obj.get("answers")
    if not isinstance(value, list) or not value:
        got = "missing" if value is None else f"got {type(value).__name__}"
        raise DeliaError(
            f"{where(path, line, 'answers')}: expected a non-empty list of strings ({got}); "
            f'give the accepted aliases, e.g. ["7", "seven"]'
        )
    for index, answer in enumerate(value):
        field = f"answers[{index}]"
        if not isinstance(answer, str):
            raise DeliaError(
                f"{where(path, line, field)}: expected a string, got {type(answer).__name__}; "
                f'quote it, e.g. "7"'
            )
        if not normalize(answer):
            raise DeliaError(
                f"{where(path, line, field)}: {answer!r} has no words to match (articles and "
                f'punctuation are ignored); give a short answer such as "Paris"'
            )
    return tuple(answer.strip() for answer in value)


def _item(obj: dict[str, Any], path: Path, line: int) -> ProbeItem:
    return ProbeItem(
        id=_text_field(obj, "id", path, line),
        question=_text_field(obj, "question", path, line),
        answers=_answers_field(obj, path, line),
    )


def _read_items(path: Path) -> list[ProbeItem]:
    items: list[ProbeItem] = []
    first_line: dict[str, int] = {}
    for line, obj in read_jsonl(path):
        item = _item(obj, path, line)
        if item.id in first_line:
            raise DeliaError(
                f"{where(path, line, 'id')}: {item.id!r} is already used on line {first_line[item.id]}; "
                f"give each question its own id"
            )
        first_line[item.id] = line
        items.append(item)
    if not items:
        raise DeliaError(f"{path}: the probe has no questions; {LINE_FORMAT}")
    return items


def load_probe(path: str | None = None) -> list[ProbeItem]:
    """The built-in probe (``path`` None or ``"builtin"``) or the questions of a JSONL file."""
    if path is None or path == BUILTIN:
        with resources.as_file(resources.files("delia.resources").joinpath(BUILTIN_FILE)) as builtin:
            return _read_items(builtin)
    local = Path(path)
    if not local.is_file():
        reason = "is a directory" if local.is_dir() else "file not found"
        raise DeliaError(f"{local}: {reason}; give a probe .jsonl file or '{BUILTIN}'")
    return _read_items(local)


@cache
def probe_questions() -> frozenset[str]:
    """The built-in probe's questions, normalized: no training data (task facts, diverse queries) asks them."""
    return frozenset(normalize(item.question) for item in load_probe())


def probe_messages(item: ProbeItem) -> list[dict[str, str]]:
    """The chat to send for one question: a single user turn asking for a short answer."""
    return [{"role": "user", "content": INSTRUCTION + item.question}]


def is_correct(reply: str, answers: Sequence[str]) -> bool:
    """Whether any accepted answer occurs in the reply as a whole word or phrase (after ``normalize``)."""
    padded = f" {normalize(reply)} "
    return any(f" {norm} " in padded for norm in map(normalize, answers) if norm)


def probe_accuracy(replies: Sequence[str], items: Sequence[ProbeItem]) -> float:
    """The fraction of replies that are correct for their item; NaN when there are none."""
    if len(replies) != len(items):
        raise ValueError(f"{len(replies)} replies for {len(items)} probe items; give one reply per item")
    if not items:
        return math.nan
    correct = sum(is_correct(reply, item.answers) for reply, item in zip(replies, items, strict=True))
    return correct / len(items)
