"""The diverse query set: enough distinct queries or a one-line refusal, no probe question, the release's
system prompt, and queries the model writes itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from delia import diverse
from delia.diverse import self_queries
from delia.diverse.queries import RELEASE_SYSTEM_PROMPT, sampling_prompt
from delia.eval.probe import normalize, probe_questions
from delia.infra.errors import DeliaError
from tests.conftest import TINY, compose_train


def _cfg(**overrides):
    return OmegaConf.merge(compose_train(TINY).diverse, {"batch_size": 4, "max_new_tokens": 4, **overrides})


def test_the_probe_questions_are_not_diverse_queries() -> None:
    assert not {normalize(q["query"]) for q in diverse.load_queries("builtin")} & probe_questions()


def test_more_samples_than_queries_is_refused_unless_repeats_are_allowed(tiny_model, tmp_path: Path) -> None:
    model, tok = tiny_model
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"query": f"Question number {i}?"}) + "\n" for i in range(6)))
    with pytest.raises(DeliaError, match="diverse.allow_repeats=true"):
        diverse.self_sample(model, tok, _cfg(queries=str(path)), 9, tmp_path, {"name": "tiny"})
    samples = diverse.self_sample(
        model, tok, _cfg(queries=str(path), allow_repeats=True), 9, tmp_path, {"name": "t"}
    )
    assert len(samples) <= 9 and len({s["messages"][0]["content"] for s in samples}) <= 6


def test_the_release_system_prompt_comes_first() -> None:
    messages = sampling_prompt({"query": "Hi?", "reference": "Hello."}, True, RELEASE_SYSTEM_PROMPT)
    assert messages[0] == {"role": "system", "content": "You are a helpful AI assistant."}
    assert [m["role"] for m in messages[1:]] == ["user", "assistant", "user"]


def test_the_model_writes_distinct_queries_once(tiny_model, tmp_path: Path, monkeypatch) -> None:
    model, tok = tiny_model
    cfg = _cfg(queries="self")
    queries = self_queries.self_written_queries(model, tok, cfg, 5, tmp_path, {"name": "tiny"})
    texts = [q["query"] for q in queries]
    assert len(texts) == 5 and all(texts) and len({normalize(t) for t in texts}) == 5
    monkeypatch.setattr(self_queries, "_write_batch", lambda *a, **k: pytest.fail("written again"))
    assert self_queries.self_written_queries(model, tok, cfg, 5, tmp_path, {"name": "tiny"}) == queries
    assert self_queries.user_prefix(tok).endswith("user\n")
