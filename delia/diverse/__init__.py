"""Self-sampling of the diverse data (conf/diverse/): queries of every kind answered by the model itself.

As in the authors' release: one answer per query at temperature 0.7, top-p 0.95; the prompt shows the
model a reference answer to the same query first (user: q, assistant: reference, user: q again) so the
sample stays on topic but is in the model's own distribution. Queries without a reference are asked once.

- :mod:`delia.diverse.queries`: the query set, the prompt, the queries held out for retention;
- :mod:`delia.diverse.cache`: the resumable, checksummed sample cache keyed by every setting;
- :mod:`delia.diverse.samplers`: the backends (``diverse.sampler``), :mod:`delia.diverse.vllm` among them;
- :mod:`delia.diverse.store`: the tokenized samples, memory-mapped for training.

A lock keeps two processes from sampling into the same cache at once: the second waits and reuses.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from delia.data.tokenize import render
from delia.diverse.cache import SampleCache, cache_key
from delia.diverse.queries import is_reserved, load_queries, query_for, query_order, sampling_prompt
from delia.diverse.samplers import Sampled, Sampler, StreamingSampler, make_sampler
from delia.model.generate import evaluating

log = logging.getLogger(__name__)
__all__ = ["cache_key", "is_reserved", "load_queries", "query_order", "sampling_prompt", "self_sample"]


def self_sample(
    model: Any,
    tokenizer: Any,
    cfg: DictConfig,
    n: int,
    cache_dir: Path,
    model_id: dict[str, Any],
    heldout: bool = False,
    model_path: str | None = None,
) -> list[dict[str, Any]]:
    """Return ``n`` diverse samples (records with ``messages``), sampling only what the cache lacks.

    ``diverse.sampler`` picks the backend (an engine such as vLLM loads ``model_path``, the model's
    folder). ``heldout=True`` answers the reserved queries instead (:func:`is_reserved`): the held-out
    slice of the diverse data on which retention is measured.
    """
    if n <= 0:
        return []
    queries = load_queries(cfg.queries)
    key = cache_key(model_id, queries, cfg, heldout)
    cache = SampleCache(cache_dir / "diverse" / key)
    order = query_order(queries, int(cfg.seed), heldout)
    with cache.locked():
        meta = {
            "model": model_id,
            "settings": OmegaConf.to_container(cfg, resolve=True),
            "queries": len(queries),
        }
        (cache.folder / "meta.json").write_text(json.dumps(meta, indent=2))
        cache.drop_torn_tail()
        done = cache.read()
        missing = [i for i in range(n) if i not in done]
        log.info(
            "diverse cache %s: %d of %d samples present, %d to sample",
            cache.folder,
            n - len(missing),
            n,
            len(missing),
        )
        if missing:
            with contextlib.closing(
                make_sampler(model, tokenizer, cfg, model_path, cache_dir, model_id)
            ) as backend:
                _sample_missing(model, tokenizer, cfg, missing, order, queries, cache, backend)
            done = cache.read()
    return [_as_record(done[i]) for i in range(n) if done[i]["response"]]


def _sample_missing(
    model: Any,
    tokenizer: Any,
    cfg: DictConfig,
    missing: list[int],
    order: list[int],
    queries: list[dict[str, str]],
    cache: SampleCache,
    backend: Sampler,
) -> None:
    prompts = {
        i: render(tokenizer, sampling_prompt(query_for(i, order, queries), cfg.use_reference), True)
        for i in missing
    }
    by_length = sorted(missing, key=lambda i: len(prompts[i]))  # similar lengths share a batch: less padding

    def record(i: int, reply: Sampled) -> dict[str, Any]:
        query = query_for(i, order, queries)
        return {
            "i": i,
            "query_id": str(query["id"]),
            "query": query["query"],
            "response": reply.text,
            "finish": reply.finish,
        }

    if isinstance(backend, StreamingSampler):  # every prompt at once; each reply is cached as it ends
        seeds = [int(cfg.seed) * 1_000_003 + i for i in by_length]
        for k, reply in backend.stream([prompts[i] for i in by_length], seeds):
            cache.append([record(by_length[k], reply)])
        return
    size = int(cfg.batch_size)
    with evaluating(model):
        for start in tqdm(range(0, len(by_length), size), desc="self-sampling diverse data", unit="batch"):
            batch = by_length[start : start + size]
            replies = backend.generate([prompts[i] for i in batch], int(cfg.seed) * 1_000_003 + batch[0])
            cache.append([record(i, reply) for i, reply in zip(batch, replies, strict=True)])


def _as_record(sample: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": sample["query"]},
            {"role": "assistant", "content": sample["response"]},
        ],
        "origin": f"diverse/{sample['i']}",
        "truncated": sample["finish"] == "length",
    }
