"""Packing: fewer padded positions, no attention or loss across examples, the same loss as unpacked."""

from __future__ import annotations

import torch
from hypothesis import given
from hypothesis import strategies as st

from delia.data.datamodule import collate
from delia.data.mixing import DIVERSE, TASK
from delia.data.packing import NO_SOURCE, collate_packed, pack_rows, padding_share
from delia.data.tokenize import IGNORE_INDEX, encode_all
from delia.module import source_losses
from tests.conftest import TINY, compose_train


@given(st.lists(st.integers(1, 50), min_size=1, max_size=30), st.integers(1, 80))
def test_rows_hold_every_example_once_and_never_overflow(lengths: list[int], capacity: int) -> None:
    rows = pack_rows(lengths, capacity)
    assert sorted(i for row in rows for i in row) == list(range(len(lengths)))
    for row in rows:
        assert sum(lengths[i] for i in row) <= max(capacity, max(lengths[i] for i in row))


def _items(tok, cfg) -> list[dict]:
    from delia.baselines import prompted_task as build_task

    records = build_task(cfg)["train"][:5]
    diverse = [
        {
            "messages": [
                {"role": "user", "content": f"Say hi {i}"},
                {"role": "assistant", "content": "Hi, how are you?"},
            ]
        }
        for i in range(3)
    ]
    task = [dict(x, source=TASK) for x in encode_all(tok, records, 384, "error", "t")]
    return task + [dict(x, source=DIVERSE) for x in encode_all(tok, diverse, 384, "error", "d")]


def test_packed_batch_layout(tiny_model) -> None:
    _, tok = tiny_model
    items = _items(tok, compose_train(TINY))
    packed = collate_packed(items, tok.pad_token_id, 384)
    plain = collate(items, tok.pad_token_id)
    assert packed["input_ids"].shape[0] < plain["input_ids"].shape[0]
    assert padding_share(packed) < padding_share(plain)
    assert packed["source"].tolist() == [item["source"] for item in items]
    starts = (packed["position_ids"] == 0) & (packed["token_source"] != NO_SOURCE)
    assert int(starts.sum()) == len(items)  # positions restart once per example
    assert (packed["labels"][starts] == IGNORE_INDEX).all()  # no target across a boundary
    n_tokens = sum(len(item["input_ids"]) for item in items)
    assert int((packed["token_source"] != NO_SOURCE).sum()) == n_tokens


def test_no_attention_crosses_an_example_boundary(tiny_model) -> None:
    model, _ = tiny_model
    model.eval()
    a, b = torch.randint(0, 1000, (1, 30)), torch.randint(0, 1000, (1, 20))
    with torch.no_grad():
        alone_a = model(input_ids=a).logits
        alone_b = model(input_ids=b).logits
        positions = torch.cat([torch.arange(30), torch.arange(20)])[None]
        packed = model(input_ids=torch.cat([a, b], 1), position_ids=positions, use_cache=False).logits
    torch.testing.assert_close(packed[:, :30], alone_a, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(packed[:, 30:], alone_b, rtol=1e-5, atol=1e-5)


def test_packed_and_unpacked_losses_are_equal_per_source(tiny_model) -> None:
    model, tok = tiny_model
    model.eval()
    items = _items(tok, compose_train(TINY))
    with torch.no_grad():
        plain = source_losses(model, collate(items, tok.pad_token_id))
        packed = source_losses(model, collate_packed(items, tok.pad_token_id, 384))
    assert int(plain.task_tokens) == int(packed.task_tokens) and int(plain.diverse_tokens) == int(
        packed.diverse_tokens
    )
    torch.testing.assert_close(packed.task, plain.task, rtol=1e-5, atol=0)
    torch.testing.assert_close(packed.diverse, plain.diverse, rtol=1e-5, atol=0)


def test_losses_from_label_positions_only_equal_full_logits_losses(tiny_model) -> None:
    import torch.nn.functional as F

    from delia.module import per_token_losses

    model, tok = tiny_model
    model.eval()
    batch = collate(_items(tok, compose_train(TINY)), tok.pad_token_id)
    with torch.no_grad():
        per_token, mask = per_token_losses(model, batch)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        full = F.cross_entropy(
            logits.transpose(1, 2), batch["labels"][:, 1:], ignore_index=IGNORE_INDEX, reduction="none"
        )
    torch.testing.assert_close(per_token[mask], full[mask], rtol=1e-5, atol=1e-5)
    assert (per_token[~mask] == 0).all()
