"""What every sampler backend is: a reply and why it ended (:class:`Sampled`), the two protocols a backend
implements (:class:`Sampler`, :class:`StreamingSampler`), the shared continuous-batching wrapper
(:class:`EngineSampler`) and the transformers backend (:class:`TransformersSampler`).

The backends (:mod:`delia.diverse.torch_engine`, :mod:`delia.diverse.llamacpp`, :mod:`delia.diverse.vllm`)
import this module; the registry that maps ``diverse.sampler`` to a backend is
:mod:`delia.diverse.samplers`, and nothing here imports it or a backend.

Every backend samples the same way: temperature, then top-p, no top-k, min-p or repetition penalty, stop on
every end-of-turn token of the chat template or at ``max_new_tokens``."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from omegaconf import DictConfig

from delia.console.progress import progress
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
        top_k=0,  # off: unset, transformers would apply its default top-k of 50
        max_new_tokens=int(cfg.max_new_tokens),
    )
    texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=True)
    ended = finished(new_tokens, end_of_turn_ids(tokenizer))
    return [Sampled(t.strip(), "stop" if done else "length") for t, done in zip(texts, ended, strict=True)]


class Sampler(Protocol):
    """A backend that answers a batch of chat-templated prompts, one sampled reply each."""

    def generate(self, prompts: list[str], seed: int) -> list[Sampled]: ...

    def close(self) -> None: ...


@runtime_checkable
class StreamingSampler(Protocol):
    """A backend that batches continuously: it takes every prompt at once and yields each reply as it ends.

    Prompt ``k`` is sampled with its own ``seeds[k]``, so a reply does not depend on the other prompts.
    """

    def stream(self, prompts: list[str], seeds: list[int]) -> Iterator[tuple[int, Sampled]]: ...


class EngineSampler:
    """A backend whose engine batches continuously: ``engine.run(token ids, seeds, settings)`` yields
    ``(k, new token ids, stopped at an end-of-turn token)`` as each reply ends. Shared by the engines."""

    def __init__(self, engine: Any, tokenizer: Any, cfg: DictConfig, label: str) -> None:
        self.engine, self.tokenizer, self.cfg, self.label = engine, tokenizer, cfg, label
        self.what = "self-sampling"  # the progress bar's name for the work (a caller may say "paraphrasing")
        self.stop_ids = end_of_turn_ids(tokenizer)

    def stream(self, prompts: list[str], seeds: list[int]) -> Iterator[tuple[int, Sampled]]:
        """Yield ``(k, reply to prompts[k])`` as each reply ends; a progress bar shows tokens a second."""
        ids = [list(self.tokenizer.encode(p, add_special_tokens=False)) for p in prompts]
        settings = {
            "temperature": float(self.cfg.temperature),
            "top_p": float(self.cfg.top_p),
            "max_new_tokens": int(self.cfg.max_new_tokens),
            "stop_ids": self.stop_ids,
        }
        start, tokens = time.perf_counter(), 0
        with progress(total=len(prompts), desc=f"{self.what} ({self.label})", unit="answer") as bar:
            for k, new, stopped in self.engine.run(ids, seeds, settings):
                tokens += len(new)
                bar.update(1)
                bar.set_postfix_str(f"{tokens / (time.perf_counter() - start):.0f} tok/s")
                text = self.tokenizer.decode(new, skip_special_tokens=True).strip()
                yield k, Sampled(text, "stop" if stopped else "length")

    def generate(self, prompts: list[str], seed: int) -> list[Sampled]:
        """One reply per prompt in the order of the prompts; prompt ``k`` is seeded with ``seed + k``."""
        replies = dict(self.stream(prompts, [seed + k for k in range(len(prompts))]))
        return [replies[k] for k in range(len(prompts))]

    def close(self) -> None:
        self.engine.close()


class TransformersSampler:
    """Batched transformers ``generate`` on the model already loaded (``diverse.sampler=transformers``)."""

    def __init__(self, model: Any, tokenizer: Any, cfg: DictConfig) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg

    def generate(self, prompts: list[str], seed: int) -> list[Sampled]:
        return generate_batch(self.model, self.tokenizer, prompts, self.cfg, seed)

    def close(self) -> None:
        """Nothing to free: the model belongs to the caller."""
