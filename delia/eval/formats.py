"""Reply formats and their metrics: the ``<sep>`` task's, and any chat dataset's (``eval.format``).

- format accuracy: the reply has the required format (``json_keys``: one JSON object or Python dict
  literal with exactly the required keys and, when a label key is named, a label among the allowed
  values; ``regex``: the whole reply matches the pattern, its ``label`` group the label);
- label accuracy: the reply's label equals the gold one (the label of the reference reply), over all
  examples (a reply without the format counts as wrong) and over the formatted ones;
- negative-control rate: the share of "do NOT use the format" replies that still use it (lower is better).

The ``<sep>`` task's format (:data:`SEP_FORMAT`) is ``json_keys`` with the keys ``thought`` and
``hallucination`` and the labels ``yes``/``no``.
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from omegaconf import DictConfig

from delia.infra.errors import DeliaError

_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


class ReplyFormat(Protocol):
    def label(self, reply: str) -> str | None:
        """The reply's label if it has the format (``""`` for a format without labels), else None."""
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


def format_scores(
    replies: Sequence[str], gold: Sequence[str | None], fmt: ReplyFormat = SEP_FORMAT
) -> dict[str, float]:
    """Format accuracy and label accuracy (over all and over formatted replies)."""
    labels = [fmt.label(reply) for reply in replies]
    n = len(replies)
    parsed = [(label, g) for label, g in zip(labels, gold, strict=True) if label is not None]
    correct = sum(label == g for label, g in parsed)
    return {
        "format_acc": len(parsed) / n if n else float("nan"),
        "label_acc": correct / n if n else float("nan"),
        "label_acc_parseable": correct / len(parsed) if parsed else float("nan"),
        "n": float(n),
    }


def negative_control_rate(replies: Sequence[str], fmt: ReplyFormat = SEP_FORMAT) -> float:
    """Share of replies that use the format although the instruction said not to (lower is better)."""
    if not replies:
        return float("nan")
    return sum(fmt.label(reply) is not None for reply in replies) / len(replies)
