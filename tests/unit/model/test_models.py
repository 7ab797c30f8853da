"""The new special token, embedding-init strategies, peft wrapping, adapter save and reload."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from delia.dataset import sep_format
from delia.infra.errors import DeliaError
from delia.model import (
    add_special_token,
    init_new_token_rows,
    load_adapter,
    load_base,
    resize_for_tokenizer,
    save_adapter,
    wrap_peft,
)
from tests.conftest import TINY, compose_train


def with_sep(tiny_model, strategy: str = "resize"):
    model, tok = tiny_model
    old = model.get_input_embeddings().weight.detach().clone()
    token_id = add_special_token(tok, "<sep>")
    resize_for_tokenizer(model, tok)
    init_new_token_rows(model, tok, [token_id], strategy, sep_format.prior_description(), seed=0)
    return model, tok, token_id, old


def test_new_token_is_one_token_and_old_rows_are_untouched(tiny_model) -> None:
    model, tok, token_id, old = with_sep(tiny_model)
    assert tok.encode("use the <sep> format", add_special_tokens=False).count(token_id) == 1
    assert token_id == old.shape[0] == len(tok) - 1
    weight = model.get_input_embeddings().weight
    assert torch.equal(weight[:token_id], old)
    assert (
        model.get_output_embeddings().weight.data_ptr() == weight.data_ptr()
    )  # tied: the output row follows


def test_existing_token_is_refused(tiny_model) -> None:
    _, tok = tiny_model
    with pytest.raises(DeliaError, match="already in the tokenizer"):
        add_special_token(tok, "<|im_end|>")


@pytest.mark.parametrize("strategy", ["mean", "description", "random"])
def test_init_strategies(tiny_model, strategy: str) -> None:
    model, tok, token_id, old = with_sep(tiny_model, strategy)
    row = model.get_input_embeddings().weight[token_id].detach()
    if strategy == "mean":
        assert torch.allclose(row, old.mean(0), atol=1e-6)
    elif strategy == "description":
        ids = tok.encode(sep_format.prior_description(), add_special_tokens=False)
        assert torch.allclose(row, old[ids].mean(0), atol=1e-6)
    else:
        assert row.std() == pytest.approx(old.std().item(), rel=0.5)


def test_new_token_row_is_trained_and_other_rows_are_not(tiny_model) -> None:
    model, tok, token_id, old = with_sep(tiny_model)
    before = model.get_input_embeddings().weight[token_id].detach().clone()
    peft_model = wrap_peft(model, compose_train(TINY).peft, [token_id])
    ids = torch.tensor([tok.encode("a <sep> b <sep> c", add_special_tokens=False)])
    optimizer = torch.optim.AdamW([p for p in peft_model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(3):
        peft_model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    effective = peft_model.get_input_embeddings()(torch.tensor([[token_id, 5]]))[0].detach()
    assert not torch.allclose(effective[0], before)  # the <sep> row moved
    assert torch.equal(effective[1], old[5])  # an ordinary row did not


def test_adapter_reloads_with_the_same_logits(tiny_model, tmp_path: Path, session_cache: Path) -> None:
    model, tok, token_id, _ = with_sep(tiny_model)
    cfg = compose_train(TINY)
    peft_model = wrap_peft(model, cfg.peft, [token_id])
    with torch.no_grad():  # make the adapter non-trivial
        for p in peft_model.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.05)
    save_adapter(peft_model, tok, tmp_path / "adapter", {"<sep>": token_id}, {"model": "tiny"})
    ids = torch.tensor([tok.encode("check this in the <sep> format", add_special_tokens=False)])
    peft_model.eval()
    with torch.no_grad():
        expected = peft_model(input_ids=ids).logits
    reloaded, tok2 = load_adapter(tmp_path / "adapter", cfg.model, session_cache)
    assert len(tok2) == len(tok)
    with torch.no_grad():
        assert torch.allclose(reloaded(input_ids=ids).logits, expected, atol=1e-5)


def test_adapter_for_another_base_is_refused(tiny_model, tmp_path: Path, session_cache: Path) -> None:
    model, tok, token_id, _ = with_sep(tiny_model)
    save_adapter(
        wrap_peft(model, compose_train(TINY).peft, [token_id]), tok, tmp_path / "a", {"<sep>": token_id}, {}
    )
    other = compose_train([*TINY, "model.architecture.hidden_size=32"]).model
    with pytest.raises(DeliaError, match="does not match"):
        load_adapter(tmp_path / "a", other, session_cache)


def test_unloadable_model_fails_with_a_clear_message(session_cache: Path, tmp_path: Path) -> None:
    # the hub id offline is checked through the CLI in test_train_e2e (HF_HUB_OFFLINE must be set at import)
    cfg = compose_train(
        ["model=llama2_7b_chat", "model.source=local", f"model.path={tmp_path / 'nowhere'}"]
    ).model
    with pytest.raises(DeliaError, match=r"model=llama2_7b_chat: cannot load '.*nowhere'.*model.path"):
        load_base(cfg, session_cache)


def test_resize_is_the_releases_init_not_the_mean(tiny_model) -> None:
    model, _, token_id, old = with_sep(tiny_model, "resize")
    row = model.get_input_embeddings().weight[token_id].detach()
    mean = old.mean(dim=0)
    # N(0, initializer_range): about that spread around zero, far from the mean row that mean init gives
    assert abs(float(row.std()) - model.config.initializer_range) < 0.5 * model.config.initializer_range
    assert not torch.allclose(row, mean, atol=1e-3)


def test_untied_output_embeddings_get_the_new_row_too(session_cache) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from delia.model import add_new_tokens

    _, tok = load_base(compose_train(TINY).model, session_cache)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(config)
    ids = add_new_tokens(model, tok, "<sep>", "mean", None, seed=0)
    token_id = ids["<sep>"]
    output = model.get_output_embeddings().weight
    torch.testing.assert_close(output[token_id], output[:token_id].mean(dim=0))
