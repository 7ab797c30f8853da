"""Metrics of the formatted-text (`<sep>`) task.

- format accuracy: the reply parses (JSON, or a Python-literal dict) with exactly the keys
  ``thought`` and ``hallucination`` and a label in ``yes``/``no``;
- label accuracy: the parsed label equals the gold label, over all examples (unparseable = wrong)
  and over the parseable ones;
- held-out instruction accuracy: the same on instruction wordings never seen in training;
- negative-control rate: the share of "do NOT use the <sep> format" replies that still use it (lower is better).
"""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Sequence
from typing import Any

FORMAT_KEYS = frozenset({"thought", "hallucination"})
LABELS = frozenset({"yes", "no"})
_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


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


def formatted_label(reply: str) -> str | None:
    """The label of a reply in the required format, or ``None`` when the format is not met."""
    parsed = parse_reply(reply)
    if parsed is None or set(parsed) != FORMAT_KEYS:
        return None
    label = parsed["hallucination"]
    if (
        not isinstance(label, str)
        or label.strip().lower() not in LABELS
        or not isinstance(parsed["thought"], str)
    ):
        return None
    return label.strip().lower()


def format_scores(replies: Sequence[str], gold: Sequence[str | None]) -> dict[str, float]:
    """Format accuracy and label accuracy (over all and over parseable replies)."""
    labels = [formatted_label(reply) for reply in replies]
    n = len(replies)
    parsed = [(label, g) for label, g in zip(labels, gold, strict=True) if label is not None]
    correct = sum(label == g for label, g in parsed)
    return {
        "format_acc": len(parsed) / n if n else float("nan"),
        "label_acc": correct / n if n else float("nan"),
        "label_acc_parseable": correct / len(parsed) if parsed else float("nan"),
        "n": float(n),
    }


def negative_control_rate(replies: Sequence[str]) -> float:
    """Share of replies that use the format although the instruction said not to (lower is better)."""
    if not replies:
        return float("nan")
    return sum(formatted_label(reply) is not None for reply in replies) / len(replies)
