"""Sampler backends (``diverse.sampler``): batched transformers ``generate`` (default) or vLLM on a GPU."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import torch
from omegaconf import DictConfig

from delia.infra.errors import DeliaError
from delia.model.generate import end_of_turn_ids, finished, generate_new_tokens

Finish = Literal["stop", "length"]


@dataclass(frozen=True)
class Sampled:
    """One sampled reply and why it ended: ``stop`` (an end-of-turn token) or ``length`` (cut short)."""

    text: str
    finish: Finish


def generate_batch(
    model: Any, tokenizer: Any, prompts: list[str], cfg: DictConfig, seed: int
) -> list[Sampled]:
    """Sample one reply per prompt (left padding, stop at any end-of-turn token)."""
    torch.manual_seed(seed)
    new_tokens = generate_new_tokens(
        model,
        tokenizer,
        prompts,
        do_sample=True,
        temperature=float(cfg.temperature),
        top_p=float(cfg.top_p),
        max_new_tokens=int(cfg.max_new_tokens),
    )
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    ended = finished(new_tokens, end_of_turn_ids(tokenizer))
    return [Sampled(t.strip(), "stop" if done else "length") for t, done in zip(texts, ended, strict=True)]


class Sampler(Protocol):
    """A backend that answers a batch of chat-templated prompts, one sampled reply each."""

    def generate(self, prompts: list[str], seed: int) -> list[Sampled]: ...

    def close(self) -> None: ...


class TransformersSampler:
    """The default backend: batched transformers ``generate`` on the model already loaded."""

    def __init__(self, model: Any, tokenizer: Any, cfg: DictConfig) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg

    def generate(self, prompts: list[str], seed: int) -> list[Sampled]:
        return generate_batch(self.model, self.tokenizer, prompts, self.cfg, seed)

    def close(self) -> None:
        """Nothing to free: the model belongs to the caller."""


def _vllm_sampler(model: Any, tokenizer: Any, cfg: DictConfig, model_path: str | None) -> Sampler:
    from delia.diverse.vllm import VllmSampler

    if model_path is None:
        raise DeliaError("diverse.sampler=vllm needs the model's folder or hub id; this caller gave none")
    return VllmSampler(model_path, tokenizer, cfg)


# diverse.sampler -> the backend's constructor
SAMPLERS: dict[str, Callable[[Any, Any, DictConfig, str | None], Sampler]] = {
    "transformers": lambda model, tokenizer, cfg, path: TransformersSampler(model, tokenizer, cfg),
    "vllm": _vllm_sampler,
}


def make_sampler(model: Any, tokenizer: Any, cfg: DictConfig, model_path: str | None) -> Sampler:
    """The backend named by ``diverse.sampler`` (``model_path``: the model's folder, for engines)."""
    name = cfg.get("sampler", "transformers")
    if name not in SAMPLERS:
        raise DeliaError(f"diverse.sampler={name!r} is unknown: use {' or '.join(SAMPLERS)}")
    return SAMPLERS[name](model, tokenizer, cfg, model_path)
