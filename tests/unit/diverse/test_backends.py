"""What every sampler backend promises, one parametrised test each: one reply per prompt that says why it
ended, replies that follow the seeds, a cache key that names the backend and what changes its samples (and
not how the work is spread), a killed sampling run that resumes from the cache with nothing lost or twice,
and a one-line refusal of a model it cannot serve. Backend-specific numerics: test_torch_engine.py,
test_llamacpp.py, test_vllm.py (a stand-in vLLM: no GPU here)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from delia import diverse as sampling
from delia.diverse import gguf_export, samplers, torch_engine
from delia.diverse.backend import StreamingSampler
from delia.infra.errors import DeliaError
from tests.conftest import TINY, compose_train

MODEL_ID = {"name": "tiny_random"}
PROMPTS = [
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nTell me a story about a fox.<|im_end|>\n<|im_start|>assistant\n",
]
needs_llama = pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="the llamacpp extra")
BACKENDS = [
    "transformers",
    "torch_engine",
    pytest.param("llamacpp", marks=needs_llama),
]
# backend -> settings whose samples differ (each a key of its own), and settings that spread the work only
VARIANTS = {
    "torch_engine": ([{"dtype": "float32"}, {"dtype": "bfloat16"}], {"slots": 3}),
    "llamacpp": (
        [{"compute_type": "f32"}, {"compute_type": "q4_1"}, {"compute_type": "f16"}],
        {"workers": 1},
    ),
}


def diverse_cfg(backend: str, **overrides):
    cfg = compose_train([*TINY, f"diverse.sampler={backend}"]).diverse
    return OmegaConf.merge(cfg, {"max_new_tokens": 6, **overrides})


def open_backend(backend: str, tiny_model, tmp_path: Path, **overrides):
    model, tok = tiny_model
    cfg = diverse_cfg(backend, **overrides)
    return samplers.make_sampler(model, tok, cfg, None, tmp_path, MODEL_ID)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_prompt_gets_one_reply_that_says_why_it_ended(backend: str, tiny_model, tmp_path: Path) -> None:
    sampler = open_backend(backend, tiny_model, tmp_path)
    try:
        replies = sampler.generate(PROMPTS, seed=3)
    finally:
        sampler.close()
    assert len(replies) == len(PROMPTS)
    for reply in replies:
        assert reply.finish in ("stop", "length") and isinstance(reply.text, str)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_same_seed_gives_the_same_replies_and_another_seed_others(
    backend: str, tiny_model, tmp_path: Path
) -> None:
    sampler = open_backend(backend, tiny_model, tmp_path, max_new_tokens=12)
    try:
        first = sampler.generate(PROMPTS, seed=5)
        assert sampler.generate(PROMPTS, seed=5) == first
        assert sampler.generate(PROMPTS, seed=50) != first
    finally:
        sampler.close()


@pytest.mark.parametrize("backend", ["torch_engine", "llamacpp"])
def test_the_cache_key_names_the_backend_and_what_changes_its_samples(backend: str) -> None:
    queries = sampling.load_queries("builtin")
    changes, spreads = VARIANTS[backend]
    keys = {sampling.cache_key(MODEL_ID, queries, diverse_cfg(backend, **{backend: v})) for v in changes}
    others = {sampling.cache_key(MODEL_ID, queries, diverse_cfg(name)) for name in ("transformers", "vllm")}
    assert len(keys) == len(changes) and not keys & others
    default = sampling.cache_key(MODEL_ID, queries, diverse_cfg(backend))
    assert sampling.cache_key(MODEL_ID, queries, diverse_cfg(backend, **{backend: spreads})) == default


class Interrupt(Exception):
    """Raised to stop a sampling run midway, as a kill would."""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_sampling_run_resumes_without_loss_or_duplicates(
    backend: str, tiny_model, tmp_path: Path, monkeypatch
) -> None:
    """Stop the backend after 5 replies (a streaming one) or 2 batches of 4, rerun: 12 samples, none lost,
    none twice, the first ones kept as they were."""
    model, tok = tiny_model
    cfg = diverse_cfg(backend, max_new_tokens=4, batch_size=4)
    probe = samplers.make_sampler(model, tok, cfg, None, tmp_path / "probe", MODEL_ID)
    kind, probe_cls = isinstance(probe, StreamingSampler), type(probe)
    probe.close()
    method = "stream" if kind else "generate"
    real = getattr(probe_cls, method)

    def dies_midway(self, prompts, seeds):
        if not kind:
            dies_midway.calls += 1
            if dies_midway.calls == 3:
                raise Interrupt
            return real(self, prompts, seeds)
        return _die_after_five(real(self, prompts, seeds))

    dies_midway.calls = 0
    monkeypatch.setattr(probe_cls, method, dies_midway)
    with pytest.raises(Interrupt):
        sampling.self_sample(model, tok, cfg, 12, tmp_path, MODEL_ID)
    [folder] = (tmp_path / "diverse").iterdir()
    first = (folder / "samples.jsonl").read_text().splitlines()
    assert len(first) == (5 if kind else 8)  # each reply (batch) was cached as it ended
    monkeypatch.setattr(probe_cls, method, real)
    samples = sampling.self_sample(model, tok, cfg, 12, tmp_path, MODEL_ID)
    lines = (folder / "samples.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["i"] for line in lines) == list(range(12))
    assert lines[: len(first)] == first
    assert len(samples) == sum(1 for line in lines if json.loads(line)["response"])


def _die_after_five(stream):
    for n, item in enumerate(stream):
        if n == 5:
            raise Interrupt
        yield item


@pytest.mark.parametrize(
    ("check", "option"),
    [
        (torch_engine.check_supported, "torch_engine decodes"),
        (gguf_export.check_supported, "llamacpp converts"),
    ],
)
def test_a_model_that_is_not_a_llama_is_refused_in_one_line(check, option: str) -> None:
    config = type("GemmaConfig", (), {"model_type": "gemma", "architectures": ["GemmaForCausalLM"]})()
    with pytest.raises(
        DeliaError, match=rf"^diverse\.sampler={option} Llama.*GemmaForCausalLM.*transformers"
    ):
        check(config)


def test_an_optional_backend_that_is_not_installed_is_refused_before_any_work(monkeypatch) -> None:
    from delia.config import validate

    real = importlib.util.find_spec
    monkeypatch.setattr(
        samplers.importlib.util, "find_spec", lambda name: None if name == "llama_cpp" else real(name)
    )
    for option in ("diverse.sampler", "retention.sampling.sampler"):
        with pytest.raises(
            DeliaError, match=rf"^{option}=llamacpp needs llama-cpp-python .*pip install -e \".\[llamacpp\]\""
        ):
            validate(compose_train([*TINY, f"{option}=llamacpp"]))
    validate(compose_train([*TINY, "diverse.sampler=llamacpp", "diverse.ratio=0", "retention.enabled=false"]))


def test_the_backends_import_the_base_and_nothing_imports_back() -> None:
    """No import circle: backend.py imports no backend and not the registry; no backend imports the registry."""
    import ast

    from tests.conftest import REPO

    def imported(module: str) -> set[str]:
        tree = ast.parse((REPO / "delia" / "diverse" / f"{module}.py").read_text())
        return {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}

    backends = ("torch_engine", "llamacpp", "vllm")
    assert not imported("backend") & {f"delia.diverse.{name}" for name in (*backends, "samplers")}
    for name in backends:
        assert "delia.diverse.samplers" not in imported(name), name
