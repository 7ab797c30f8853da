"""Reply formats and their metrics: the ``<sep>`` task's, and any chat dataset's (``eval.format``).

Three things are told apart for every reply, because they fail differently (DESIGN.md section 8):

- it *begins* the format (``json_keys``: it opens a dict whose first key is a required key, code fence
  allowed; ``regex``: it is a prefix of a text the pattern matches, by the ``regex`` package's partial
  matching); a complete reply also begins it;
- it *is* the format, complete and valid (``json_keys``: one JSON object or Python dict literal with
  exactly the required keys and, when a label key is named, a label among the allowed values; ``regex``:
  the whole reply matches the pattern, its ``label`` group the label);
- it was *cut* at the generation budget (no end of turn within ``max_new_tokens``): a cut reply has not
  failed the format, it ran out of room.

Per split (:func:`format_scores`): ``format_begins``, ``format_acc`` (complete and valid),
``format_acc_uncut`` (complete and valid among the replies not cut), ``cut``; label accuracy over all
examples (a reply without the complete format counts as wrong) and over the complete ones
(``label_acc_parseable``, on ``label_n`` replies). The negative control (:func:`negative_control`):
``format_rate`` is the share of "do NOT use the format" replies that *begin* it, that is use it,
whether or not they finish it (lower is better); ``complete_rate`` the share that complete it.

The ``<sep>`` task's format (:data:`SEP_FORMAT`) is ``json_keys`` with the keys ``thought`` and
``hallucination`` and the labels ``yes``/``no``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import regex
from omegaconf import DictConfig

from delia.infra.errors import DeliaError

_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")
_OPENING_FENCE = re.compile(r"^```[a-zA-Z]*\s*")


class ReplyFormat(Protocol):
    def label(self, reply: str) -> str | None:
        """The reply's label if it has the complete format (``""`` for a format without labels), else None."""
        ...

    def begins(self, reply: str) -> bool:
        """Whether the reply opens the format (complete or not)."""
        ...


def parse_reply(reply: str) -> dict[str, Any] | None:
    """The reply as a dict if it is one JSON object or Python dict literal (code fences allowed)."""
    text = _FENCE.sub("", reply.strip()).strip()
    start, end = text.find("{"), text.rfind("}")
    if start != 0 or end != len(text) - 1:
        return None
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            continue
        return value if isinstance(value, dict) else None
    return None


@dataclass(frozen=True)
class JsonKeys:
    """A dict with exactly ``keys`` (text values); ``label_key``'s value among ``labels`` (lower-cased)."""

    keys: frozenset[str]
    label_key: str | None = None
    labels: frozenset[str] = frozenset()

    def begins(self, reply: str) -> bool:
        text = _OPENING_FENCE.sub("", reply.strip())
        first_key = re.match(r"\{\s*([\"'])(.*?)\1\s*:", text)
        return first_key is not None and first_key.group(2) in self.keys

    def label(self, reply: str) -> str | None:
        parsed = parse_reply(reply)
        if parsed is None or set(parsed) != self.keys or not all(isinstance(v, str) for v in parsed.values()):
            return None
        if self.label_key is None:
            return ""
        label = parsed[self.label_key].strip().lower()
        return label if not self.labels or label in self.labels else None


@dataclass(frozen=True)
class Regex:
    """The whole reply (stripped) matches ``pattern``; its named group ``label``, if any, is the label."""

    pattern: re.Pattern[str]
    partial: Any = field(init=False, repr=False, compare=False)  # the same pattern, for partial matches

    def __post_init__(self) -> None:
        object.__setattr__(self, "partial", regex.compile(self.pattern.pattern, regex.DOTALL))

    def begins(self, reply: str) -> bool:
        text = reply.strip()
        return bool(text) and self.partial.fullmatch(text, partial=True) is not None

    def label(self, reply: str) -> str | None:
        match = self.pattern.fullmatch(reply.strip())
        if match is None:
            return None
        return (match.groupdict().get("label") or "").strip().lower()


SEP_FORMAT = JsonKeys(frozenset({"thought", "hallucination"}), "hallucination", frozenset({"yes", "no"}))


def reply_format(eval_cfg: DictConfig) -> ReplyFormat | None:
    """The format ``eval.format`` names for a chat dataset (None: no format metrics)."""
    kind = eval_cfg.get("format")
    if kind is None:
        return None
    if kind == "json_keys":
        keys = list(eval_cfg.get("required_keys") or [])
        label_key = eval_cfg.get("label_key")
        if not keys or (label_key and label_key not in keys):
            raise DeliaError(
                "eval.format=json_keys needs eval.required_keys=[...] that include eval.label_key"
            )
        return JsonKeys(
            frozenset(keys), label_key, frozenset(v.lower() for v in eval_cfg.get("label_values") or [])
        )
    try:
        return Regex(re.compile(str(eval_cfg.get("pattern") or ""), re.DOTALL))
    except re.error as err:
        raise DeliaError(
            f"eval.pattern={eval_cfg.get('pattern')!r} is not a regular expression ({err})"
        ) from None


def formatted_label(reply: str, fmt: ReplyFormat = SEP_FORMAT) -> str | None:
    """The label of a reply in the required format, or ``None`` when the format is not met."""
    return fmt.label(reply)


def _share(flags: Sequence[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def format_scores(
    replies: Sequence[str],
    gold: Sequence[str | None],
    fmt: ReplyFormat = SEP_FORMAT,
    cut: Sequence[bool] | None = None,
) -> dict[str, float]:
    """Per split: begins / complete and valid / cut, and label accuracy (see the module docstring).

    ``cut``: per reply, whether it hit the budget (None: unknown, none counted as cut)."""
    cut = list(cut) if cut is not None else [False] * len(replies)
    labels = [fmt.label(reply) for reply in replies]
    n = len(replies)
    complete = [label is not None for label in labels]
    uncut = [ok for ok, was_cut in zip(complete, cut, strict=True) if not was_cut]
    correct = sum(label == g for label, g in zip(labels, gold, strict=True) if label is not None)
    n_complete = sum(complete)
    return {
        "format_begins": _share(
            [fmt.begins(reply) or ok for reply, ok in zip(replies, complete, strict=True)]
        ),
        "format_acc": _share(complete),
        "format_acc_uncut": _share(uncut),
        "cut": _share(cut),
        "label_acc": correct / n if n else float("nan"),
        "label_acc_parseable": correct / n_complete if n_complete else float("nan"),
        "label_n": float(n_complete),
        "n": float(n),
    }


def negative_control(
    replies: Sequence[str], fmt: ReplyFormat = SEP_FORMAT, cut: Sequence[bool] | None = None
) -> dict[str, float]:
    """ "do NOT use the format" replies: the share that use it (begin it: ``format_rate``, lower is
    better), the share that complete it, and the share cut at the budget."""
    cut = list(cut) if cut is not None else [False] * len(replies)
    complete = [fmt.label(reply) is not None for reply in replies]
    return {
        "format_rate": _share([fmt.begins(r) or ok for r, ok in zip(replies, complete, strict=True)]),
        "complete_rate": _share(complete),
        "cut": _share(cut),
        "n": float(len(replies)),
    }
