"""The model transform: messages -> token ids and labels with the tokenizer's own chat template.

Loss is on assistant tokens only. Chat templates without ``{% generation %}`` give no assistant mask,
so the mask is built from the rendered text: the conversation is rendered prefix by prefix, each new
piece is tokenized on its own, and only the pieces that are assistant replies get labels.

Tokenized piece by piece, a conversation must give the ids of the whole conversation tokenized at once;
with some tokenizers (SentencePiece adds a leading space to every piece) it does not, and then the whole
text is tokenized once and labels go to the tokens that start inside a reply (character offsets).

A reply that generation cut short (``truncated``: the self-sampled answer hit ``max_new_tokens``) gets no
label on its end-of-turn text: the model must not learn to stop in mid-sentence.
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


def _pieces(
    tokenizer: Any, messages: list[dict[str, str]], origin: str, end_of_turn: bool = True
) -> list[tuple[str, bool]]:
    """Split the rendered conversation into ``(text, trained)`` pieces: assistant replies are trained,
    and with ``end_of_turn=False`` the text the template puts after the last reply is not."""
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
    if not end_of_turn and pieces and pieces[-1][1]:
        pieces[-1:] = _without_end_of_turn(pieces[-1][0], messages[-1]["content"])
    return pieces


def _without_end_of_turn(piece: str, content: str) -> list[tuple[str, bool]]:
    """The reply's piece as (reply text, trained) + (the template's end-of-turn text, not trained)."""
    end = piece.find(content)
    if end < 0:  # the template rewrote the reply: nothing to split off reliably
        return [(piece, True)]
    end += len(content)
    return [(piece[:end], True), (piece[end:], False)] if piece[end:] else [(piece, True)]


def _ids_and_labels(tokenizer: Any, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """Token ids of the whole conversation and their labels (``-100`` outside trained pieces)."""
    input_ids: list[int] = []
    labels: list[int] = []
    for text, trained in pieces:
        ids = tokenizer.encode(text, add_special_tokens=False)
        input_ids += ids
        labels += ids if trained else [IGNORE_INDEX] * len(ids)
    whole = "".join(text for text, _ in pieces)
    if tokenizer.encode(whole, add_special_tokens=False) == input_ids:
        return input_ids, labels
    return _by_offsets(tokenizer, whole, pieces)


def _by_offsets(tokenizer: Any, whole: str, pieces: list[tuple[str, bool]]) -> tuple[list[int], list[int]]:
    """The whole text tokenized at once; a token is labelled when it overlaps a trained piece (a
    SentencePiece token such as "▁blue" also covers the space before the reply)."""
    spans, start = [], 0
    for text, trained in pieces:
        if trained:
            spans.append((start, start + len(text)))
        start += len(text)
    enc = tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)
    labels = [
        token if any(begin < b and end > a for a, b in spans) else IGNORE_INDEX
        for token, (begin, end) in zip(enc["input_ids"], enc["offset_mapping"], strict=True)
    ]
    return list(enc["input_ids"]), labels


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
    end_of_turn: bool = True,
) -> dict[str, list[int]] | None:
    """Token ids and labels (``-100`` outside assistant replies); ``None`` when the example is skipped.

    ``end_of_turn=False``: no label on the end-of-turn text after the last reply (a truncated sample).
    """
    input_ids, labels = _ids_and_labels(tokenizer, _pieces(tokenizer, messages, origin, end_of_turn))
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
        origin = record.get("origin", what)
        ended = not record.get("truncated", False)
        item = encode_chat(tokenizer, record["messages"], max_length, on_overlength, origin, stats, ended)
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
