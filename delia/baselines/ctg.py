"""Controlled text generation (``baseline=ctg``): no training; the prior description is in the prompt."""

from __future__ import annotations

from typing import Any


def with_prior_description(records: list[dict[str, Any]], description: str) -> list[dict[str, Any]]:
    """The records with the prior description put before the first user turn's text.

    It goes into the user turn (not a system turn) because some chat templates (Gemma's) have no
    system role.
    """
    out = []
    for record in records:
        messages = [dict(m) for m in record["messages"]]
        first_user = next(i for i, m in enumerate(messages) if m["role"] == "user")
        messages[first_user]["content"] = f"{description}\n\n{messages[first_user]['content']}"
        out.append({**record, "messages": messages})
    return out
