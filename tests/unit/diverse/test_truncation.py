"""Self-sampled answers end where the model ended them: the stop reason is stored, a truncated answer is
trained without an end of turn (no_eos) or replaced (drop), and the share of truncated ones is reported."""

from __future__ import annotations

from pathlib import Path

from omegaconf import OmegaConf

from delia import diverse
from delia.diverse import backend as samplers
from delia.diverse import cache
from delia.diverse.backend import Sampled
from tests.conftest import TINY, compose_train

MODEL = {"name": "tiny"}


def _cfg(**overrides):
    return OmegaConf.merge(compose_train(TINY).diverse, {"batch_size": 4, "max_new_tokens": 4, **overrides})


def _every_other_cut(model, tokenizer, prompts, cfg, seed):
    return [Sampled(f"reply {seed}-{k}", "length" if k % 2 else "stop") for k in range(len(prompts))]


def test_records_say_why_an_answer_ended(tiny_model, tmp_path: Path) -> None:
    model, tok = tiny_model
    stats: dict[str, int] = {}
    samples = diverse.self_sample(model, tok, _cfg(max_new_tokens=2), 6, tmp_path, MODEL, stats=stats)
    assert stats["drawn"] == 6 and 0 <= stats["truncated"] <= 6
    assert sum(s["truncated"] for s in samples) == stats["truncated"]  # 2 tokens rarely end a turn


def test_drop_replaces_truncated_answers_and_no_eos_keeps_them(
    tiny_model, tmp_path: Path, monkeypatch
) -> None:
    model, tok = tiny_model
    monkeypatch.setattr(samplers, "generate_batch", _every_other_cut)
    stats: dict[str, int] = {}
    # the transformers backend, whose generate_batch is replaced above by one that cuts every other reply
    kept = diverse.self_sample(
        model, tok, _cfg(truncated="drop", sampler="transformers"), 6, tmp_path, MODEL, stats=stats
    )
    assert len(kept) == 6 and not any(s["truncated"] for s in kept)
    assert stats["drawn"] > 6 and stats["truncated"] == stats["drawn"] - 6
    marked = diverse.self_sample(model, tok, _cfg(sampler="transformers"), 6, tmp_path, MODEL)
    assert len(marked) == 6 and sum(s["truncated"] for s in marked) == 3


def test_the_policy_and_the_system_prompt_are_in_the_cache_key() -> None:
    queries = diverse.load_queries("builtin")
    base = cache.cache_key(MODEL, queries, _cfg())
    assert base != cache.cache_key(MODEL, queries, _cfg(truncated="drop"))
    assert base != cache.cache_key(MODEL, queries, _cfg(system_prompt="release"))


def test_a_run_reports_the_truncated_share(tiny_run) -> None:
    _, metrics = tiny_run
    assert 0.0 <= metrics["train/diverse_truncated_share"] <= 1.0
