"""The diverse sample cache: keyed by settings, resumable after an interruption, no loss or duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from delia import diverse as sampling
from delia.diverse import backend as samplers
from delia.diverse.cache import SampleCache
from delia.infra.errors import DeliaError
from tests.conftest import TINY, compose_train

MODEL_ID = {"name": "tiny_random"}


def diverse_cfg(**overrides):
    # the batched transformers path (the llama.cpp one: tests/test_sampling_llamacpp.py)
    cfg = compose_train([*TINY, "diverse.sampler=transformers"]).diverse
    return OmegaConf.merge(cfg, overrides)


def test_builtin_query_set_is_large_and_varied() -> None:
    queries = sampling.load_queries("builtin")
    assert len({q["query"].strip().lower() for q in queries}) >= 1000
    assert len({q["kind"] for q in queries}) >= 10
    assert all("<sep>" not in q["query"] for q in queries)


def test_prompt_shows_the_reference_first() -> None:
    query = {"query": "What is 2+2?", "reference": "4"}
    roles = [m["role"] for m in sampling.sampling_prompt(query, use_reference=True)]
    assert roles == ["user", "assistant", "user"]
    assert len(sampling.sampling_prompt(query, use_reference=False)) == 1


def test_cache_key_depends_on_model_queries_and_settings() -> None:
    queries = sampling.load_queries("builtin")
    base = sampling.cache_key(MODEL_ID, queries, diverse_cfg())
    assert base == sampling.cache_key(MODEL_ID, queries, diverse_cfg())
    assert base != sampling.cache_key({"name": "other"}, queries, diverse_cfg())
    assert base != sampling.cache_key(MODEL_ID, queries[:-1], diverse_cfg())
    assert base != sampling.cache_key(MODEL_ID, queries, diverse_cfg(temperature=0.9))
    assert base != sampling.cache_key(MODEL_ID, queries, diverse_cfg(max_new_tokens=9))


class Interrupt(Exception):
    pass


def test_interrupted_sampling_resumes_without_loss_or_duplicates(
    tiny_model, tmp_path: Path, monkeypatch
) -> None:
    model, tok = tiny_model
    cfg = diverse_cfg(batch_size=4, max_new_tokens=4)
    real = samplers.generate_batch
    calls = {"n": 0}

    def dies_on_third_batch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise Interrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(samplers, "generate_batch", dies_on_third_batch)
    with pytest.raises(Interrupt):
        sampling.self_sample(model, tok, cfg, 14, tmp_path, MODEL_ID)
    [folder] = (tmp_path / "diverse").iterdir()
    cache_file = folder / "samples.jsonl"
    first = [json.loads(line) for line in cache_file.read_text().splitlines()]
    assert len(first) == 8
    with cache_file.open("a") as handle:  # a kill in the middle of a write leaves a torn line
        handle.write('{"i": 99, "query": "torn')

    monkeypatch.setattr(samplers, "generate_batch", real)
    samples = sampling.self_sample(model, tok, cfg, 14, tmp_path, MODEL_ID)
    lines = [json.loads(line) for line in cache_file.read_text().splitlines()]
    assert sorted(r["i"] for r in lines) == list(range(14))  # nothing lost, nothing twice
    assert lines[:8] == first  # what was sampled before the interruption is kept as it was
    assert len(samples) == sum(1 for r in lines if r["response"])


def test_cached_samples_are_reused(tiny_model, tmp_path: Path, monkeypatch) -> None:
    model, tok = tiny_model
    cfg = diverse_cfg(batch_size=4, max_new_tokens=4)
    first = sampling.self_sample(model, tok, cfg, 6, tmp_path, MODEL_ID)
    monkeypatch.setattr(samplers, "generate_batch", lambda *a, **k: pytest.fail("sampled again"))
    assert sampling.self_sample(model, tok, cfg, 6, tmp_path, MODEL_ID) == first
    assert sampling.self_sample(model, tok, cfg, 3, tmp_path, MODEL_ID) == [
        r for r in first if int(r["origin"].split("/")[1]) < 3
    ]


def test_corrupted_record_is_resampled(tiny_model, tmp_path: Path) -> None:
    model, tok = tiny_model
    cfg = diverse_cfg(batch_size=4, max_new_tokens=4)
    sampling.self_sample(model, tok, cfg, 4, tmp_path, MODEL_ID)
    [folder] = (tmp_path / "diverse").iterdir()
    lines = (folder / "samples.jsonl").read_text().splitlines()
    record = json.loads(lines[0])
    record["response"] = "tampered"
    (folder / "samples.jsonl").write_text("\n".join([json.dumps(record), *lines[1:]]) + "\n")
    assert len(SampleCache(folder).read()) == 3  # the checksum no longer matches
    sampling.self_sample(model, tok, cfg, 4, tmp_path, MODEL_ID)
    assert sorted(SampleCache(folder).read()) == [0, 1, 2, 3]


def test_query_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "q.jsonl"
    path.write_text('{"query": "fine"}\n{"prompt": "no query key"}\n')
    with pytest.raises(DeliaError, match=r"q\.jsonl:2 field 'query'"):
        sampling.load_queries(str(path))
