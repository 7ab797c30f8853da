"""Model-written paraphrases (``wordings.sources`` ``paraphrase``): the model rewrites each distinct base
instruction ``wordings.paraphrase.n`` times through the project's sampler backends
(:func:`delia.diverse.samplers.make_sampler`: torch_engine, llamacpp, transformers, vllm), with
``wordings.paraphrase.prompt``, after the few-shot ``wordings.paraphrase.examples``. Another model can paraphrase: ``+model@wordings.paraphrase.model=<model
config>`` (loaded only when something is left to sample).

Cached like the diverse samples, with their cache (:class:`delia.diverse.cache.SampleCache`):
``<cache>/wordings/<key>/samples.jsonl``, one folder per instruction, keyed by the paraphraser's identity,
the instruction, the prompt (the whole conversation), the sampling settings (the backend and what changes its samples among them)
and the seed. Each reply is appended (checksummed) as it ends, so a killed run resumes where it stopped
and nothing is sampled twice; raising ``n`` keeps the paraphrases already drawn. Reply ``i`` of an
instruction has its own seed (streaming backends), so it does not depend on what else was sampled with it.

A reply becomes a wording as its first line, with quotes and a leading "Instruction:" label taken off;
the filters (:mod:`delia.dataset.wordings.filters`) decide whether it enters the pool.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from delia.console.progress import progress
from delia.data.tokenize import render
from delia.dataset.wordings.base import Wording
from delia.diverse.backend import Sampled, StreamingSampler
from delia.diverse.cache import SampleCache
from delia.diverse.samplers import make_sampler, sampler_identity
from delia.model import base_model_folder, load_base, model_identity
from delia.model.generate import evaluating

log = logging.getLogger(__name__)
VERSION = 1  # in the cache key: a change to how a reply is asked for gets new paraphrases
_TOKENS = re.compile(r"<[^<>\s]+>")
_LABEL = re.compile(
    r"^\s*(?:\**\s*)?(?:rewritten|new|paraphrased|reworded)?\s*instruction\s*\**\s*:\s*", re.I
)


@dataclass(frozen=True)
class Runtime:
    """What the model-written sources need of the run: its loaded model and where the cache is."""

    model: Any
    tokenizer: Any
    model_cfg: DictConfig
    cache_dir: Path


def prompt_text(template: str, instruction: str, required: Sequence[str]) -> str:
    """The paraphrase request for one instruction: ``{instruction}`` and ``{keep}`` filled in (``{keep}``
    names the required strings the instruction holds, and any ``<token>`` in it)."""
    kept = [s for s in required if s in instruction] + _TOKENS.findall(instruction)
    kept = list(dict.fromkeys(kept))
    named = ", ".join(kept)
    keep = f" and keep {named} exactly as written (the new instruction must contain {named})" if kept else ""
    return template.replace("{keep}", keep).replace("{instruction}", instruction)


def conversation(cfg: DictConfig, instruction: str, required: Sequence[str]) -> list[dict[str, str]]:
    """The chat the paraphraser answers: each of ``wordings.paraphrase.examples`` as an earlier request
    and its answer (few-shot), then the request for ``instruction``."""
    template = str(cfg.prompt)
    messages = []
    for example in cfg.get("examples") or []:
        messages.append(
            {"role": "user", "content": prompt_text(template, str(example.instruction), required)}
        )
        messages.append({"role": "assistant", "content": str(example.paraphrase)})
    messages.append({"role": "user", "content": prompt_text(template, instruction, required)})
    return messages


def cache_key(identity: dict[str, Any], instruction: str, prompt: str, cfg: DictConfig) -> str:
    settings = {
        "model": identity,
        "instruction": instruction,
        "prompt": prompt,
        "temperature": float(cfg.temperature),
        "top_p": float(cfg.top_p),
        "max_new_tokens": int(cfg.max_new_tokens),
        "seed": int(cfg.seed),
        **sampler_identity(cfg),
        "version": VERSION,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def reply_seed(seed: int, instruction: str, i: int) -> int:
    """The seed of paraphrase ``i`` of ``instruction``: the same whatever else is sampled alongside."""
    return int(hashlib.sha256(f"{seed}/{instruction}/{i}".encode()).hexdigest()[:8], 16)


def clean(reply: str) -> str:
    """The wording a reply holds: its first non-empty line, without a label or enclosing quotes."""
    lines = [line.strip() for line in reply.strip().splitlines() if line.strip()]
    first = _LABEL.sub("", lines[0]) if lines else ""
    return " ".join(first.strip().strip("\"'`“”‘’*").split())


def paraphrase_model(cfg: DictConfig, runtime: Runtime) -> DictConfig:
    """The paraphraser's model config: ``wordings.paraphrase.model``, or the run's model."""
    return cfg.model if cfg.get("model") else runtime.model_cfg


def paraphrases(
    bases: Sequence[Wording], cfg: DictConfig, required: Sequence[str], runtime: Runtime
) -> list[Wording]:
    """``cfg.n`` paraphrases of each base wording (in base order), sampling only what the cache lacks;
    each keeps its base's position, and is marked ``cut`` when the budget cut it."""
    model_cfg = paraphrase_model(cfg, runtime)
    identity = model_identity(model_cfg)
    texts = list(dict.fromkeys(b.text for b in bases))
    chats = {text: conversation(cfg, text, required) for text in texts}
    prompts = {text: json.dumps(chat) for text, chat in chats.items()}  # what the cache key and records hold
    caches = {
        text: SampleCache(runtime.cache_dir / "wordings" / cache_key(identity, text, prompts[text], cfg))
        for text in texts
    }
    with contextlib.ExitStack() as stack:
        for text, cache in caches.items():
            stack.enter_context(cache.locked())
            meta = {"model": identity, "instruction": text, "conversation": chats[text]}
            meta["settings"] = OmegaConf.to_container(cfg, resolve=True)
            (cache.folder / "meta.json").write_text(json.dumps(meta, indent=2))
            cache.drop_torn_tail()
        n = int(cfg.n)
        missing = [(text, i) for text in texts for i in range(n) if i not in caches[text].read()]
        log.info(
            "wordings.paraphrase: %d of %d paraphrases in the cache, %d to sample",
            len(texts) * n - len(missing),
            len(texts) * n,
            len(missing),
        )
        if missing:
            _sample(missing, caches, chats, prompts, cfg, runtime, model_cfg)
        done = {text: cache.read() for text, cache in caches.items()}
    return [
        Wording(
            clean(done[b.text][i]["response"]),
            "paraphrase",
            b.position,
            b.register,
            b.length,
            cut=done[b.text][i]["finish"] == "length",
        )
        for b in bases
        for i in range(n)
    ]


def _sample(
    missing: list[tuple[str, int]],
    caches: dict[str, SampleCache],
    chats: dict[str, list[dict[str, str]]],
    prompts: dict[str, str],
    cfg: DictConfig,
    runtime: Runtime,
    model_cfg: DictConfig,
) -> None:
    """Sample the missing paraphrases; each reply is cached as it ends (a streaming backend) or batch by
    batch."""
    own = cfg.get("model") is not None
    model, tokenizer = load_base(model_cfg, runtime.cache_dir) if own else (runtime.model, runtime.tokenizer)
    rendered = [render(tokenizer, chats[t], True) for t, _ in missing]
    folder = base_model_folder(model_cfg, runtime.cache_dir) if cfg.sampler == "vllm" else None

    def keep(k: int, reply: Sampled) -> None:
        text, i = missing[k]
        caches[text].append(
            [
                {
                    "i": i,
                    "query_id": caches[text].folder.name,
                    "query": prompts[text],
                    "response": reply.text,
                    "finish": reply.finish,
                }
            ]
        )

    identity = model_identity(model_cfg)
    with contextlib.closing(
        make_sampler(model, tokenizer, cfg, folder, runtime.cache_dir, identity)
    ) as backend:
        if hasattr(backend, "what"):
            backend.what = "paraphrasing"
        if isinstance(backend, StreamingSampler):
            seeds = [reply_seed(int(cfg.seed), t, i) for t, i in missing]
            for k, reply in backend.stream(rendered, seeds):
                keep(k, reply)
            return
        size = int(cfg.batch_size)
        with evaluating(model):
            for start in progress(
                range(0, len(missing), size), desc="paraphrasing instructions", unit="batch"
            ):
                batch = range(start, min(start + size, len(missing)))
                replies = backend.generate(
                    [rendered[k] for k in batch], reply_seed(int(cfg.seed), *missing[start])
                )
                for k, reply in zip(batch, replies, strict=True):
                    keep(k, reply)
