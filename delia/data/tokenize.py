"""The model transform: messages -> token ids and labels with the tokenizer's own chat template.

Loss is on assistant tokens only. Chat templates without ``{% generation %}`` give no assistant mask,
so the mask is built from the rendered text: the conversation is rendered prefix by prefix, each new
piece is tokenized on its own, and only the pieces that are assistant replies get labels.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from delia.infra.errors import DeliaError

IGNORE_INDEX = -100
OVERLENGTH_CHOICES = ("error", "skip", "truncate")
log = logging.getLogger(__name__)


def render(tokenizer: Any, messages: list[dict[str, str]], add_generation_prompt: bool) -> str:
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def generation_prompt(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    """The prompt for generating the reply to ``messages`` (a trailing assistant turn is dropped)."""
    if messages and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    return render(tokenizer, messages, add_generation_prompt=True)


def _pieces(tokenizer: Any, messages: list[dict[str, str]], origin: str) -> list[tuple[str, bool]]:
    """Split the rendered conversation into ``(text, is_assistant_reply)`` pieces."""
    pieces: list[tuple[str, bool]] = []
    done = ""
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
            pieces.append((prompt[len(done) :], False))
            done = prompt
        text = render(tokenizer, messages[: i + 1], add_generation_prompt=False)
        if not text.startswith(done):
            raise DeliaError(
                f"{origin}: the chat template does not render turns as prefixes of each other; "
                f"use a model whose template appends turns"
            )
        pieces.append((text[len(done) :], message["role"] == "assistant"))
        done = text
    return pieces


@dataclass
class EncodeStats:
    """Counts of examples that did not fit ``data.max_length``."""

    skipped: int = 0
    truncated: int = 0
    origins: list[str] = field(default_factory=list)


def encode_chat(
    tokenizer: Any,
    messages: list[dict[str, str]],
    max_length: int,
    on_overlength: str = "error",
    origin: str = "example",
    stats: EncodeStats | None = None,
) -> dict[str, list[int]] | None:
    """Token ids and labels (``-100`` outside assistant replies); ``None`` when the example is skipped."""
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in _pieces(tokenizer, messages, origin):
        ids = tokenizer.encode(text, add_special_tokens=False)
        input_ids += ids
        labels += ids if trained else [IGNORE_INDEX] * len(ids)
    stats = stats if stats is not None else EncodeStats()
    if len(input_ids) > max_length:
        if on_overlength == "error":
            raise DeliaError(
                f"{origin}: {len(input_ids)} tokens, longer than data.max_length={max_length}; raise "
                f"data.max_length or set data.on_overlength=skip (drop it) or truncate (cut it)"
            )
        if on_overlength not in OVERLENGTH_CHOICES:
            raise DeliaError(
                f"data.on_overlength={on_overlength!r} is unknown: use {', '.join(OVERLENGTH_CHOICES)}"
            )
        input_ids, labels = input_ids[:max_length], labels[:max_length]
        if on_overlength == "skip" or all(label == IGNORE_INDEX for label in labels):
            stats.skipped += 1
            stats.origins.append(origin)
            return None
        stats.truncated += 1
    if all(label == IGNORE_INDEX for label in labels):
        raise DeliaError(
            f"{origin}: no assistant reply to train on; the last message must be the assistant's"
        )
    return {"input_ids": input_ids, "labels": labels}


def encode_all(
    tokenizer: Any, records: list[dict[str, Any]], max_length: int, on_overlength: str, what: str
) -> list[dict[str, list[int]]]:
    """Encode ``records``; report skipped/truncated counts in the log."""
    stats = EncodeStats()
    encoded = []
    for record in records:
        item = encode_chat(
            tokenizer, record["messages"], max_length, on_overlength, record.get("origin", what), stats
        )
        if item is not None:
            encoded.append(item)
    if stats.skipped or stats.truncated:
        log.warning(
            "%s: %d examples longer than data.max_length=%d skipped, %d truncated (first: %s)",
            what,
            stats.skipped,
            max_length,
            stats.truncated,
            stats.origins[:3],
        )
    if records and not encoded:
        raise DeliaError(f"{what}: every example was longer than data.max_length={max_length}; raise it")
    return encoded
