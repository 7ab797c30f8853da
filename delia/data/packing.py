"""Sequence packing: the examples of a batch packed into as few rows as fit, without padding waste.

Packing happens inside a batch, so a step trains on exactly the examples of the unpacked step plan and
the loss (the mean over the batch's assistant tokens) is the same; only the padding goes. Each example
keeps its own positions (``position_ids`` restart at 0) and, with no ``attention_mask`` given,
transformers builds a block-diagonal causal mask from those positions: no token attends across an
example boundary. The first token of every example is never a target, so no loss crosses a boundary.

Rows are filled first-fit decreasing up to ``row_length`` tokens (the data's ``max_length``).
"""

from __future__ import annotations

from typing import Any

import torch

from delia.data.mixing import TASK
from delia.data.tokenize import IGNORE_INDEX

NO_SOURCE = -1


def pack_rows(lengths: list[int], row_length: int) -> list[list[int]]:
    """First-fit decreasing: the indices of the examples in each row (no row over ``row_length``)."""
    rows: list[list[int]] = []
    room: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        slot = next((r for r, free in enumerate(room) if free >= lengths[i]), None)
        if slot is None:
            rows.append([i])
            room.append(max(row_length, lengths[i]) - lengths[i])
        else:
            rows[slot].append(i)
            room[slot] -= lengths[i]
    return rows


def collate_packed(batch: list[dict[str, Any]], pad_id: int, row_length: int) -> dict[str, torch.Tensor]:
    """Pack ``batch`` into rows: ``input_ids``, ``labels``, ``position_ids``, per-token ``token_source``.

    ``source`` stays one entry per example (for the per-source example counts).
    """
    rows = pack_rows([len(item["input_ids"]) for item in batch], row_length)
    width = max(sum(len(batch[i]["input_ids"]) for i in row) for row in rows)
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    positions = torch.zeros((len(rows), width), dtype=torch.long)
    token_source = torch.full((len(rows), width), NO_SOURCE, dtype=torch.long)
    for r, row in enumerate(rows):
        start = 0
        for i in row:
            item, n = batch[i], len(batch[i]["input_ids"])
            input_ids[r, start : start + n] = torch.tensor(item["input_ids"])
            labels[r, start : start + n] = torch.tensor(item["labels"])
            labels[r, start] = IGNORE_INDEX  # never predicted from the previous example
            positions[r, start : start + n] = torch.arange(n)
            token_source[r, start : start + n] = item.get("source", TASK)
            start += n
        positions[r, start:] = torch.arange(width - start)  # the padding is a sequence of its own
    source = torch.tensor([item.get("source", TASK) for item in batch], dtype=torch.long)
    return {
        "input_ids": input_ids,
        "labels": labels,
        "position_ids": positions,
        "token_source": token_source,
        "source": source,
    }


def padding_share(batch: dict[str, torch.Tensor]) -> float:
    """The share of a collated batch's positions that hold no example token."""
    if "token_source" in batch:
        return float((batch["token_source"] == NO_SOURCE).float().mean())
    return float(1 - batch["attention_mask"].float().mean())
