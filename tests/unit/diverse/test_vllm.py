"""The vLLM sampler: one-line errors without vLLM or a GPU, and the calls it makes (against a fake vllm)."""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType, SimpleNamespace
from typing import Any, ClassVar

import pytest
from omegaconf import DictConfig, OmegaConf

from delia.diverse import vllm as sampling_vllm
from delia.diverse.vllm import VllmSampler
from delia.infra.errors import DeliaError

BOS = 1


def diverse_cfg(**overrides: Any) -> DictConfig:
    base = {"temperature": 0.7, "top_p": 0.95, "max_new_tokens": 96, "seed": 3, "batch_size": 4}
    return OmegaConf.create({**base, **overrides})


class FakeTokenizer:
    """Word-level ids; a BOS in front unless ``add_special_tokens=False``."""

    eos_token_id = 2

    def __init__(self) -> None:
        self.calls: list[bool] = []

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        self.calls.append(add_special_tokens)
        ids = [10 + len(word) for word in text.split()]
        return [BOS, *ids] if add_special_tokens else ids


class FakeLLM:
    """Records its options and calls; answers each prompt with its ids, padded with whitespace."""

    instances: ClassVar[list[FakeLLM]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.calls: list[tuple[list[Any], Any, dict[str, Any]]] = []
        FakeLLM.instances.append(self)

    def generate(self, prompts: list[Any], params: Any, **kwargs: Any) -> list[SimpleNamespace]:
        self.calls.append((prompts, params, kwargs))
        texts = [f"  reply {p['prompt_token_ids']}\n" for p in prompts]
        return [SimpleNamespace(outputs=[SimpleNamespace(text=t, finish_reason="stop")]) for t in texts]


def fake_vllm() -> ModuleType:
    module = ModuleType("vllm")
    module.LLM = FakeLLM  # type: ignore[attr-defined]
    module.SamplingParams = lambda **kwargs: SimpleNamespace(**kwargs)  # type: ignore[attr-defined]
    module.TokensPrompt = dict  # type: ignore[attr-defined]  # a TypedDict in vLLM: a plain dict at run time
    return module


@pytest.fixture
def with_fake_vllm(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeLLM.instances.clear()
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm())
    monkeypatch.setattr(sampling_vllm.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(sampling_vllm.torch.cuda, "empty_cache", lambda: None)


def assert_one_line(err: DeliaError) -> None:
    message = str(err)
    assert "diverse.sampler=vllm" in message
    assert "diverse.sampler=transformers" in message
    assert "\n" not in message and "Traceback" not in message
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vllm is installed here")
def test_without_vllm_the_error_is_one_line_naming_the_option() -> None:
    with pytest.raises(DeliaError) as info:
        VllmSampler("some/model", FakeTokenizer(), diverse_cfg())
    assert "pip install vllm" in str(info.value)
    assert_one_line(info.value)


def test_a_vllm_without_token_prompts_is_reported_as_too_old(monkeypatch: pytest.MonkeyPatch) -> None:
    old = fake_vllm()
    del old.TokensPrompt
    monkeypatch.setitem(sys.modules, "vllm", old)
    with pytest.raises(DeliaError) as info:
        VllmSampler("some/model", FakeTokenizer(), diverse_cfg())
    assert "vllm>=0.8" in str(info.value)
    assert_one_line(info.value)


def test_without_a_gpu_the_error_is_one_line(monkeypatch: pytest.MonkeyPatch, with_fake_vllm: None) -> None:
    monkeypatch.setattr(sampling_vllm.torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeliaError) as info:
        VllmSampler("some/model", FakeTokenizer(), diverse_cfg())
    assert "GPU" in str(info.value)
    assert_one_line(info.value)
    assert not FakeLLM.instances


def test_engine_gets_the_path_seed_and_options(with_fake_vllm: None) -> None:
    VllmSampler("/cache/models/smollm2", FakeTokenizer(), diverse_cfg())
    assert FakeLLM.instances[-1].kwargs == {
        "model": "/cache/models/smollm2",
        "seed": 3,
        "trust_remote_code": False,
        "dtype": "auto",
        "gpu_memory_utilization": 0.9,
        "tensor_parallel_size": 1,
    }


def test_engine_options_come_from_diverse_vllm(with_fake_vllm: None) -> None:
    cfg = diverse_cfg(vllm={"gpu_memory_utilization": 0.5, "dtype": "bfloat16", "tensor_parallel_size": 2})
    VllmSampler("m", FakeTokenizer(), cfg)
    kwargs = FakeLLM.instances[-1].kwargs
    assert (kwargs["gpu_memory_utilization"], kwargs["dtype"], kwargs["tensor_parallel_size"]) == (
        0.5,
        "bfloat16",
        2,
    )


def test_generate_passes_token_ids_without_a_second_bos(with_fake_vllm: None) -> None:
    tokenizer = FakeTokenizer()
    sampler = VllmSampler("m", tokenizer, diverse_cfg())
    sampler.generate(["<s> user: hi", "<s> user: a longer question"], seed=7)
    prompts, _, kwargs = FakeLLM.instances[-1].calls[-1]
    assert tokenizer.calls == [False, False]
    assert prompts == [
        {"prompt_token_ids": tokenizer.encode("<s> user: hi", add_special_tokens=False)},
        {"prompt_token_ids": tokenizer.encode("<s> user: a longer question", add_special_tokens=False)},
    ]
    assert all(p["prompt_token_ids"][0] != BOS for p in prompts)
    assert kwargs == {"use_tqdm": False}


def test_sampling_params_carry_the_settings_and_seeds(with_fake_vllm: None) -> None:
    sampler = VllmSampler("m", FakeTokenizer(), diverse_cfg(temperature=0.5, top_p=0.9, max_new_tokens=12))
    sampler.generate(["a", "b", "c"], seed=100)
    _, params, _ = FakeLLM.instances[-1].calls[-1]
    assert [p.seed for p in params] == [100, 101, 102]
    for p in params:
        assert (p.temperature, p.top_p, p.max_tokens, p.n) == (0.5, 0.9, 12, 1)
        assert p.stop_token_ids == [FakeTokenizer.eos_token_id]


def test_replies_come_back_stripped_in_prompt_order(with_fake_vllm: None) -> None:
    tokenizer = FakeTokenizer()
    sampler = VllmSampler("m", tokenizer, diverse_cfg())
    prompts = ["one", "three words here", "two words"]
    replies = sampler.generate(prompts, seed=0)
    assert [r.text for r in replies] == [
        f"reply {tokenizer.encode(p, add_special_tokens=False)}" for p in prompts
    ]
    assert {r.finish for r in replies} == {"stop"}
    assert sampler.generate([], seed=0) == []


def test_close_frees_the_engine_and_refuses_later_calls(with_fake_vllm: None) -> None:
    with VllmSampler("m", FakeTokenizer(), diverse_cfg()) as sampler:
        assert sampler.llm is FakeLLM.instances[-1]
    assert sampler.llm is None
    sampler.close()
    with pytest.raises(DeliaError, match="closed"):
        sampler.generate(["a"], seed=0)


def test_the_sampler_option_picks_the_backend(tiny_model) -> None:
    from omegaconf import OmegaConf

    from delia.diverse import cache as sampling_cache
    from delia.diverse import samplers as sampling
    from delia.diverse.backend import TransformersSampler
    from delia.infra.errors import DeliaError

    model, tok = tiny_model
    cfg = OmegaConf.create(
        {"sampler": "transformers", "temperature": 0.7, "top_p": 0.95, "max_new_tokens": 2}
    )
    backend = sampling.make_sampler(model, tok, cfg, None)
    assert isinstance(backend, TransformersSampler) and len(backend.generate(["Hi"], seed=0)) == 1
    with pytest.raises(DeliaError, match="diverse.sampler='beam' is unknown"):
        sampling.make_sampler(model, tok, OmegaConf.merge(cfg, {"sampler": "beam"}), None)
    with pytest.raises(DeliaError, match="needs the model's folder"):
        sampling.make_sampler(model, tok, OmegaConf.merge(cfg, {"sampler": "vllm"}), None)
    vllm_cfg = OmegaConf.merge(cfg, {"sampler": "vllm", "seed": 0, "use_reference": True})
    base = OmegaConf.merge(cfg, {"seed": 0, "use_reference": True})
    assert sampling_cache.cache_key({}, [], vllm_cfg) != sampling_cache.cache_key({}, [], base)
