"""Self-sampling with vLLM (``diverse.sampler=vllm``), as the authors sampled their diverse data.

The prompts arrive already rendered with the chat template, so they are tokenized here with the model's
Hugging Face tokenizer and ``add_special_tokens=False`` and handed to vLLM as token ids. Passing the
strings instead would let vLLM tokenize them with its defaults, which for many tokenizers prepends a BOS
token that the template already wrote: a doubled BOS that puts the prompt out of distribution.

vLLM is imported only when a :class:`VllmSampler` is built, so the package works without it.
"""

from __future__ import annotations

import gc
import importlib
import logging
from types import ModuleType
from typing import Any

import torch
from omegaconf import DictConfig

from delia.diverse.backend import Sampled
from delia.infra.errors import DeliaError
from delia.model.generate import end_of_turn_ids

log = logging.getLogger(__name__)

FIX = "`pip install vllm` on a CUDA machine, or set diverse.sampler=transformers"
DEFAULT_ENGINE = {"gpu_memory_utilization": 0.9, "dtype": "auto", "tensor_parallel_size": 1}


def import_vllm() -> ModuleType:
    """The ``vllm`` module, or a one-line :class:`DeliaError` naming the option and the fix."""
    try:
        module = importlib.import_module("vllm")
        for name in ("LLM", "SamplingParams", "TokensPrompt"):
            getattr(module, name)
    except (ImportError, AttributeError):
        raise DeliaError(
            f"diverse.sampler=vllm needs vllm>=0.8, which is not installed or too old: run {FIX}"
        ) from None
    return module


def require_cuda() -> None:
    """vLLM samples on a GPU only: fail early, in one line, where there is none."""
    if not torch.cuda.is_available():
        raise DeliaError(
            "diverse.sampler=vllm needs a CUDA GPU and none is available: "
            "run on a CUDA machine, or set diverse.sampler=transformers"
        )


def engine_options(cfg: DictConfig) -> dict[str, Any]:
    """``diverse.vllm`` merged over the defaults, with the types vLLM expects."""
    options = {**DEFAULT_ENGINE, **dict(cfg.get("vllm") or {})}
    return {
        "dtype": str(options["dtype"]),
        "gpu_memory_utilization": float(options["gpu_memory_utilization"]),
        "tensor_parallel_size": int(options["tensor_parallel_size"]),
    }


def token_prompts(vllm: ModuleType, tokenizer: Any, prompts: list[str]) -> list[Any]:
    """Chat-templated strings as vLLM token prompts; no special tokens added (the template has them)."""
    return [
        vllm.TokensPrompt(prompt_token_ids=list(tokenizer.encode(text, add_special_tokens=False)))
        for text in prompts
    ]


def sampling_params(vllm: ModuleType, cfg: DictConfig, seed: int, stop_ids: list[int]) -> Any:
    """One reply per prompt at the configured temperature, top-p and length, seeded."""
    return vllm.SamplingParams(
        n=1,
        temperature=float(cfg.temperature),
        top_p=float(cfg.top_p),
        max_tokens=int(cfg.max_new_tokens),
        seed=seed,
        # the same stops as the transformers path: every end-of-turn token of the chat template
        stop_token_ids=stop_ids or None,
        skip_special_tokens=True,
    )


class VllmSampler:
    """A vLLM engine on ``model_path`` that answers batches of chat-templated prompts.

    Build one per sampling call (the engine takes most of the GPU) and :meth:`close` it afterwards, or
    use it as a context manager.
    """

    def __init__(self, model_path: str, tokenizer: Any, cfg: DictConfig) -> None:
        self._vllm = import_vllm()
        require_cuda()
        self.cfg = cfg
        self.tokenizer = tokenizer
        options = engine_options(cfg)
        log.info("vLLM sampler on %s with %s", model_path, options)
        self.llm: Any = self._vllm.LLM(
            model=model_path, seed=int(cfg.seed), trust_remote_code=False, **options
        )

    def generate(self, prompts: list[str], seed: int) -> list[Sampled]:
        """Sample one reply per prompt; replies come back stripped, in the order of the prompts.

        Prompt ``k`` is seeded with ``seed + k``: one shared seed would give every prompt of the batch
        the same random draws.
        """
        if self.llm is None:
            raise DeliaError("diverse.sampler=vllm: the sampler was closed; build a new VllmSampler")
        if not prompts:
            return []
        stops = end_of_turn_ids(self.tokenizer)
        params = [sampling_params(self._vllm, self.cfg, seed + k, stops) for k in range(len(prompts))]
        outputs = self.llm.generate(
            token_prompts(self._vllm, self.tokenizer, prompts), params, use_tqdm=False
        )
        return [
            Sampled(
                out.outputs[0].text.strip(), "length" if out.outputs[0].finish_reason == "length" else "stop"
            )
            for out in outputs
        ]

    def close(self) -> None:
        """Free the engine and the GPU memory it holds; calling it twice is harmless."""
        if self.llm is None:
            return
        self.llm = None
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def __enter__(self) -> VllmSampler:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
