"""diverse.sampler=torch_engine: the model's logits, exact top-p, continuous batching, the cache, resume."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf
from transformers import TopPLogitsWarper

from delia import diverse as sampling
from delia.diverse import torch_engine
from delia.diverse.torch_engine import Decoder, TorchEngine, nucleus_draw, shared_prefix
from tests.conftest import TINY, compose_train

MODEL_ID = {"name": "tiny_random"}


def prompt_ids(tok, texts: list[str]) -> list[list[int]]:
    return [
        tok.encode(f"<|im_start|>user\n{t}<|im_end|>\n<|im_start|>assistant\n", add_special_tokens=False)
        for t in texts
    ]


@torch.inference_mode()
def model_logits(model, ids: list[int]) -> torch.Tensor:
    return model(torch.tensor([ids])).logits[0, -1].float()


def test_prefill_and_decode_give_the_models_logits_for_rows_of_different_lengths(tiny_model) -> None:
    model, tok = tiny_model
    short, long = prompt_ids(tok, ["Hi", "Tell me a long story about a fox and a crow."])
    decoder = Decoder(model, "float32")
    cache = decoder.cache(slots=3, positions=len(long) + 4)
    torch.testing.assert_close(
        decoder.prefill(long, 0, cache), model_logits(model, long), atol=1e-4, rtol=1e-4
    )
    torch.testing.assert_close(
        decoder.prefill(short, 1, cache), model_logits(model, short), atol=1e-4, rtol=1e-4
    )
    rows = [list(long), list(short)]
    for step in range(3):  # both rows decode together, each at its own position
        tokens = [17 + step, 301 + step]
        logits = decoder.decode(torch.tensor(tokens), torch.tensor([len(r) for r in rows]), cache)
        for r, token in enumerate(tokens):
            rows[r].append(token)
            torch.testing.assert_close(logits[r], model_logits(model, rows[r]), atol=1e-4, rtol=1e-4)


def test_bfloat16_logits_follow_the_float32_ones(tiny_model) -> None:
    model, tok = tiny_model
    [ids] = prompt_ids(tok, ["Name a colour."])
    exact, rounded = Decoder(model, "float32"), Decoder(model, "bfloat16")
    a = exact.prefill(ids, 0, exact.cache(1, len(ids)))
    b = rounded.prefill(ids, 0, rounded.cache(1, len(ids)))
    assert b.dtype == torch.float32 and not torch.equal(a, b)
    assert torch.corrcoef(torch.stack([a, b]))[0, 1] > 0.99


def test_shared_prefix_leaves_every_prompt_a_token_of_its_own() -> None:
    assert shared_prefix([[1, 2, 3, 4], [1, 2, 5], [1, 2, 3]]) == [1, 2]
    assert shared_prefix([[1, 2], [1, 2, 3]]) == [1]
    assert shared_prefix([[7, 2], [1, 2]]) == []


def test_a_row_prefilled_after_a_shared_prefix_gives_the_models_logits(tiny_model) -> None:
    model, tok = tiny_model
    prompts = prompt_ids(tok, ["Name a colour.", "Name a fox."])
    shared = shared_prefix(prompts)
    assert 0 < len(shared) < min(map(len, prompts))
    decoder = Decoder(model, "float32")
    cache = decoder.cache(3, max(map(len, prompts)) + 2)
    decoder.prefill(shared, 2, cache)  # the spare row
    for row, ids in enumerate(prompts):
        cache.move(2, row, len(shared))
        logits = decoder.prefill(ids, row, cache, start=len(shared))
        torch.testing.assert_close(logits, model_logits(model, ids), atol=1e-4, rtol=1e-4)
    logits = decoder.decode(torch.tensor([5, 9]), torch.tensor([len(p) for p in prompts]), cache)
    for row, (ids, token) in enumerate(zip(prompts, [5, 9], strict=True)):
        torch.testing.assert_close(logits[row], model_logits(model, [*ids, token]), atol=1e-4, rtol=1e-4)


def test_bfloat16_decoding_attends_in_float32(tiny_model) -> None:
    """The keys and values of bfloat16 weights are kept in float32, exactly (SDPA with one query per row
    is several times slower in bfloat16 on a CPU)."""
    model, tok = tiny_model
    [ids] = prompt_ids(tok, ["Name a colour."])
    decoder = Decoder(model, "bfloat16")
    cache = decoder.cache(2, len(ids) + 2)
    assert {t.dtype for t in (*cache.keys, *cache.values)} == {torch.float32}
    decoder.prefill(ids, 0, cache)
    keys = cache.keys[0][0, :, : len(ids)]
    layer = decoder.layers[0]
    _, k, _ = decoder._qkv(
        decoder.embed[torch.tensor(ids)], layer, decoder.cos[: len(ids), None], decoder.sin[: len(ids), None]
    )
    assert torch.equal(keys, k.transpose(0, 1).float())  # bfloat16 values, stored exactly


@pytest.mark.parametrize("rows", [1, 5, 64])
def test_a_packed_bfloat16_projection_computes_what_f_linear_does(rows: int) -> None:
    weight = torch.randn(96, 40, generator=torch.Generator().manual_seed(rows))
    x = torch.randn(rows, 40).bfloat16()
    projection = torch_engine.Projection.of(weight, torch.bfloat16)
    assert (projection.packed is not None) == torch_engine.onednn_bfloat16()
    torch.testing.assert_close(projection(x), F.linear(x, weight.bfloat16()), atol=0, rtol=0)


def grid(n: int, rows: int) -> list[torch.Tensor]:
    """``n`` evenly spaced uniforms per row, as ``n`` draws of one uniform per row."""
    return [torch.full((rows,), (i + 0.5) / n) for i in range(n)]


def test_top_p_keeps_the_same_tokens_as_transformers() -> None:
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0)) * 2
    kept = torch.isfinite(TopPLogitsWarper(0.9)(None, logits / 0.7))
    drawn = torch.stack([nucleus_draw(logits, 0.7, 0.9, u) for u in grid(20_000, 6)], 1)
    for row in range(6):
        assert set(drawn[row].tolist()) == set(kept[row].nonzero().flatten().tolist())


def test_a_draw_follows_the_renormalised_nucleus() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])  # top-p 0.9: the mass before the 0.05 token is 0.95
    logits = torch.cat([probs.log(), torch.full((400,), -30.0)])[None]
    drawn = torch.cat([nucleus_draw(logits, 1.0, 0.9, u) for u in grid(950, 1)])
    assert torch.bincount(drawn, minlength=4)[:4].tolist() == [500, 300, 150, 0]


def test_a_nucleus_wider_than_the_candidates_is_sorted_in_full() -> None:
    logits = torch.zeros(1, 1000)  # flat: top-p 0.5 keeps 500 tokens, more than the candidates read
    drawn = {int(nucleus_draw(logits, 1.0, 0.5, u)) for u in grid(5000, 1)}
    assert torch_engine.CANDIDATES < len(drawn) <= 500
    every = {int(nucleus_draw(logits, 1.0, 1.0, u)) for u in grid(5000, 1)}
    assert len(every) == 1000  # top-p 1: every token


def run(engine, prompts, seeds, max_new: int, stop_ids: list[int]) -> dict[int, tuple[list[int], bool]]:
    conf = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": max_new, "stop_ids": stop_ids}
    return {k: (list(new), stopped) for k, new, stopped in engine.run(prompts, seeds, conf)}


def test_continuous_batching_gives_each_prompt_the_reply_it_gets_alone(tiny_model) -> None:
    model, tok = tiny_model
    prompts = prompt_ids(
        tok, ["a", "a longer one", "what is 2+2?", "name a fox", "b", "sing a song", "x y z"]
    )
    stops = list(range(0, 49152, 40))  # many end-of-turn ids: rows end at different steps, rows move
    batched = run(TorchEngine(model, "float32", slots=3), prompts, list(range(7)), 12, stops)
    alone = run(TorchEngine(model, "float32", slots=1), prompts, list(range(7)), 12, stops)
    assert sorted(batched) == list(range(7))
    assert batched == alone
    assert len({len(new) for new, _ in batched.values()}) > 2  # rows ended at different steps
    for new, stopped in batched.values():
        assert 1 <= len(new) <= 12
        assert stopped == (new[-1] in stops)
        assert stopped or len(new) == 12


def test_replies_follow_the_seeds(tiny_model) -> None:
    model, tok = tiny_model
    prompts = prompt_ids(tok, ["a", "b", "c"])
    engine = TorchEngine(model, "float32", slots=2)
    first = run(engine, prompts, [1, 2, 3], 8, [])
    assert run(engine, prompts, [1, 2, 3], 8, []) == first
    assert run(engine, prompts, [4, 5, 6], 8, []) != first


def diverse_cfg(**overrides):
    return OmegaConf.merge(compose_train([*TINY, "diverse.sampler=torch_engine"]).diverse, overrides)


def test_dtype_auto_is_bfloat16_only_where_onednn_computes_it(monkeypatch) -> None:
    for supported, expected in ((True, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(torch_engine, "onednn_bfloat16", lambda supported=supported: supported)
        assert torch_engine.options(diverse_cfg(torch_engine={"dtype": "auto"}))["dtype"] == expected
        assert torch_engine.options(diverse_cfg(torch_engine={"dtype": "float32"}))["dtype"] == "float32"
    # the key holds the resolved dtype: auto shares its samples with the dtype it resolved to
    queries = sampling.load_queries("builtin")
    auto = sampling.cache_key(MODEL_ID, queries, diverse_cfg(torch_engine={"dtype": "auto"}))
    assert auto == sampling.cache_key(MODEL_ID, queries, diverse_cfg(torch_engine={"dtype": "float32"}))
