"""Self-sampling of the diverse data (conf/diverse/): queries of every kind answered by the model itself.

As in the authors' release: one answer per query at temperature 0.7, top-p 0.95; the prompt shows the
model a reference answer to the same query first (user: q, assistant: reference, user: q again) so the
sample stays on topic but is in the model's own distribution. Queries without a reference are asked once.

- :mod:`delia.diverse.queries`: the query set, the prompt, the queries held out for retention;
- :mod:`delia.diverse.cache`: the resumable, checksummed sample cache keyed by every setting;
- :mod:`delia.diverse.backend`: what a sampler backend is; :mod:`delia.diverse.samplers`: the registry
  (``diverse.sampler``) of the backends, :mod:`delia.diverse.torch_engine`, :mod:`delia.diverse.llamacpp`
  and :mod:`delia.diverse.vllm`.

The tokenized, memory-mapped copy of the samples that training reads is :mod:`delia.data.store`.

A lock keeps two processes from sampling into the same cache at once: the second waits and reuses.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from delia.console.progress import progress
from delia.data.tokenize import render
from delia.diverse.backend import Sampled, Sampler, StreamingSampler
from delia.diverse.cache import SampleCache, cache_key
from delia.diverse.queries import (
    RELEASE_SYSTEM_PROMPT,
    check_enough,
    is_reserved,
    load_queries,
    query_for,
    query_order,
    repeats,
    sampling_prompt,
)
from delia.diverse.samplers import make_sampler
from delia.diverse.self_queries import self_written_queries
from delia.infra.errors import DeliaError
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
    stats: dict[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Return ``n`` diverse samples (records with ``messages``), sampling only what the cache lacks.

    ``diverse.sampler`` picks the backend (an engine such as vLLM loads ``model_path``, the model's
    folder). ``heldout=True`` answers the reserved queries instead (:func:`is_reserved`): the held-out
    slice of the diverse data on which retention is measured. A sample cut by ``max_new_tokens`` is
    kept and marked ``truncated`` (``diverse.truncated=no_eos``: no label on its end of turn) or dropped
    and replaced by the answer to a further query (``drop``). ``stats`` gets the samples drawn and the
    truncated ones among them.
    """
    if n <= 0:
        return []
    queries = _queries(model, tokenizer, cfg, n, cache_dir, model_id)
    order = query_order(queries, int(cfg.seed), heldout)
    part = "held-out" if heldout else "training"
    check_enough(n, order, bool(cfg.get("allow_repeats", False)), part)
    if n > len(order):  # diverse.allow_repeats=true: say how often each query is asked
        log.info("diverse.allow_repeats=true: %s", repeats(n, len(order), part))
    cache = SampleCache(cache_dir / "diverse" / cache_key(model_id, queries, cfg, heldout))
    with cache.locked():
        meta = {
            "model": model_id,
            "settings": OmegaConf.to_container(cfg, resolve=True),
            "queries": len(queries),
        }
        (cache.folder / "meta.json").write_text(json.dumps(meta, indent=2))
        cache.drop_torn_tail()

        def open_backend() -> Sampler:
            return make_sampler(model, tokenizer, cfg, model_path, cache_dir, model_id)

        drawn = n
        what = "sampling the held-out retention slice" if heldout else "self-sampling diverse data"
        done = _sample_indices(model, tokenizer, cfg, range(n), order, queries, cache, open_backend, what)
        while cfg.get("truncated", "no_eos") == "drop" and _kept(done, drawn) < n:
            more = range(drawn, drawn + n - _kept(done, drawn))
            _refuse_endless_drops(cfg, drawn, len(order))
            done = _sample_indices(model, tokenizer, cfg, more, order, queries, cache, open_backend, what)
            drawn = more.stop
    records = [_as_record(done[i]) for i in range(drawn) if done[i]["response"]]
    if stats is not None:
        stats.update(drawn=drawn, truncated=sum(done[i]["finish"] == "length" for i in range(drawn)))
    if cfg.get("truncated", "no_eos") == "drop":
        records = [r for r in records if not r["truncated"]][:n]
    return records


def _queries(
    model: Any, tokenizer: Any, cfg: DictConfig, n: int, cache_dir: Path, model_id: dict[str, Any]
) -> list[dict[str, str]]:
    """The query set of ``diverse.queries``: a file, ``builtin``, or ``self`` (written by the model)."""
    if cfg.queries != "self":
        return load_queries(cfg.queries)
    # enough for n training queries once the held-out ones are set aside, and a margin for drops
    return self_written_queries(model, tokenizer, cfg, 2 * n + 32, cache_dir, model_id)


def _kept(done: dict[int, dict[str, Any]], drawn: int) -> int:
    return sum(1 for i in range(drawn) if done[i]["response"] and done[i]["finish"] != "length")


def _refuse_endless_drops(cfg: DictConfig, drawn: int, distinct: int) -> None:
    if drawn >= 4 * distinct or (drawn >= distinct and not cfg.get("allow_repeats", False)):
        raise DeliaError(
            f"diverse.truncated=drop: too many answers hit diverse.max_new_tokens={cfg.max_new_tokens} to "
            f"replace them from the query set; raise diverse.max_new_tokens or use diverse.truncated=no_eos"
        )


def _sample_indices(
    model: Any,
    tokenizer: Any,
    cfg: DictConfig,
    indices: range,
    order: list[int],
    queries: list[dict[str, str]],
    cache: SampleCache,
    open_backend: Callable[[], Sampler],
    what: str,
) -> dict[int, dict[str, Any]]:
    """Sample what the cache lacks among ``indices``; return every intact record of the cache."""
    done = cache.read()
    missing = [i for i in indices if i not in done]
    present = len(indices) - len(missing)
    log.info(
        "diverse cache %s: %d of %d samples present, %d to sample",
        cache.folder,
        present,
        len(indices),
        len(missing),
    )
    if missing:
        with contextlib.closing(open_backend()) as backend:
            _sample_missing(model, tokenizer, cfg, missing, order, queries, cache, backend, what)
        done = cache.read()
    return done


def _sample_missing(
    model: Any,
    tokenizer: Any,
    cfg: DictConfig,
    missing: list[int],
    order: list[int],
    queries: list[dict[str, str]],
    cache: SampleCache,
    backend: Sampler,
    what: str = "self-sampling diverse data",
) -> None:
    system = RELEASE_SYSTEM_PROMPT if cfg.get("system_prompt") == "release" else cfg.get("system_prompt")
    prompts = {
        i: render(tokenizer, sampling_prompt(query_for(i, order, queries), cfg.use_reference, system), True)
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
        for start in progress(range(0, len(by_length), size), desc=what, unit="batch"):
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
