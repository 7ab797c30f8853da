"""delia_sdpa: the same losses and gradients as sdpa on packed rows, sdpa's own path for everything else."""

from __future__ import annotations

import pytest
import torch

from delia.data.datamodule import collate
from delia.data.packing import collate_packed
from delia.model import packed_attention
from delia.model.packed_attention import example_lengths, use_packed_attention
from delia.module import per_token_losses
from tests.conftest import TINY, compose_train
from tests.unit.data.test_packing import _items


def test_example_lengths_follow_position_resets() -> None:
    positions = torch.tensor(
        [[0, 1, 2, 0, 1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6, 7, 8], [5, 6, 0, 1, 2, 3, 0, 0, 1]]
    )
    assert example_lengths(positions) == [[3, 2, 4], [9], [2, 4, 1, 2]]


def _losses_and_grads(model, batch) -> tuple[torch.Tensor, list[torch.Tensor]]:
    model.zero_grad()
    per_token, mask = per_token_losses(model, batch)
    per_token[mask].sum().backward()
    grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    return per_token.detach(), grads


def test_packed_rows_give_sdpa_losses_and_gradients(tiny_model, monkeypatch) -> None:
    model, tok = tiny_model
    model.eval()  # no dropout: the two passes must see the same computation
    batch = collate_packed(_items(tok, compose_train(TINY)), tok.pad_token_id, 384)
    assert any(len(row) > 1 for row in example_lengths(batch["position_ids"]))
    reference, reference_grads = _losses_and_grads(model, batch)
    assert use_packed_attention(model)
    calls = []
    monkeypatch.setattr(packed_attention, "_per_example", _counting(packed_attention._per_example, calls))
    packed, packed_grads = _losses_and_grads(model, batch)
    assert len(calls) == model.config.num_hidden_layers  # every layer took the per-example path
    torch.testing.assert_close(packed, reference, rtol=1e-5, atol=1e-5)
    for got, want in zip(packed_grads, reference_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


def _counting(fn, calls: list):
    def wrapped(*args, **kwargs):
        calls.append(1)
        return fn(*args, **kwargs)

    return wrapped


def test_padded_batches_and_generation_are_unchanged(tiny_model) -> None:
    model, tok = tiny_model
    model.eval()
    batch = collate(_items(tok, compose_train(TINY)), tok.pad_token_id)
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    prompt = {k: v[:2, :12] for k, v in inputs.items()}
    with torch.no_grad():
        logits = model(**inputs).logits
        generated = model.generate(**prompt, max_new_tokens=6, do_sample=False)
        assert use_packed_attention(model)
        torch.testing.assert_close(model(**inputs).logits, logits, rtol=1e-5, atol=1e-5)
        assert torch.equal(model.generate(**prompt, max_new_tokens=6, do_sample=False), generated)


def test_other_implementations_are_kept(tiny_model) -> None:
    model, _ = tiny_model
    model.set_attn_implementation("eager")
    assert not use_packed_attention(model)
    assert model.config._attn_implementation == "eager"


def test_a_model_that_disagrees_keeps_sdpa(tiny_model, monkeypatch, caplog: pytest.LogCaptureFixture) -> None:
    model, _ = tiny_model

    def wrong(module, query, key, value, attention_mask, dropout=0.0, scaling=None, **kwargs):
        out = torch.nn.functional.scaled_dot_product_attention(
            query, key, value, is_causal=True, enable_gqa=True
        )
        return out.transpose(1, 2).contiguous(), None  # attends across the examples of a row

    monkeypatch.setattr(packed_attention, "attention", wrong)
    assert not use_packed_attention(model)
    assert model.config._attn_implementation == "sdpa"
    assert "keeping sdpa" in caplog.text
