"""Self-sampling of the diverse data: queries of every kind answered by the model itself.

As in the authors' release: one answer per query at temperature 0.7, top-p 0.95; the prompt shows the
model a reference answer to the same query first (user: q, assistant: reference, user: q again) so the
sample stays on topic but is in the model's own distribution. Queries without a reference are asked once.

Samples go to a cache keyed by model + query set + sampling settings
(``<cache>/diverse/<key>/samples.jsonl``), one JSON record per line with a checksum. Records are
appended batch by batch and flushed, so an interrupted run keeps what it sampled; a rerun drops a
torn last line, keeps every intact record, and samples only the missing indices (no loss, no
duplicates). A lock file keeps two processes from sampling into the same cache at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import random
from importlib import resources
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tqdm.auto import tqdm

from delia.data.chat import read_jsonl
from delia.data.tokenize import render
from delia.errors import DeliaError, where
from delia.locking import file_lock

log = logging.getLogger(__name__)
PROMPT_VERSION = 2  # 2: queries reserved for the retention slice are never sampled for training
RESERVE_EVERY = 16  # about one query in 16 is reserved for the held-out retention slice


def load_queries(spec: str) -> list[dict[str, str]]:
    """The diverse query set: ``builtin`` (delia/resources/diverse_queries.jsonl) or a JSONL path."""
    if spec == "builtin":
        text = (
            resources.files("delia.resources").joinpath("diverse_queries.jsonl").read_text(encoding="utf-8")
        )
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    queries = []
    for number, obj in read_jsonl(Path(spec)):
        if not isinstance(obj.get("query"), str) or not obj["query"].strip():
            raise DeliaError(
                f"{where(spec, number, 'query')}: missing or empty; each line needs a query string"
            )
        queries.append({"id": str(obj.get("id", number)), "query": obj["query"], **_reference(obj)})
    if not queries:
        raise DeliaError(f"diverse.queries={spec}: the file holds no queries")
    return queries


def _reference(obj: dict[str, Any]) -> dict[str, str]:
    ref = obj.get("reference")
    return {"reference": ref} if isinstance(ref, str) and ref.strip() else {}


def sampling_prompt(query: dict[str, str], use_reference: bool) -> list[dict[str, str]]:
    """The release's prompt: show a reference answer to the query, then ask the query again."""
    if use_reference and query.get("reference"):
        return [
            {"role": "user", "content": query["query"]},
            {"role": "assistant", "content": query["reference"]},
            {"role": "user", "content": query["query"]},
        ]
    return [{"role": "user", "content": query["query"]}]


def is_reserved(query: dict[str, str]) -> bool:
    """Whether a query belongs to the held-out slice (retention), decided by a hash of its text.

    The choice depends on nothing but the query, so training never samples a held-out query, whatever
    the seed, the ratio or the query file.
    """
    return int(hashlib.sha256(query["query"].encode()).hexdigest(), 16) % RESERVE_EVERY == 0


def query_order(queries: list[dict[str, str]], seed: int, heldout: bool) -> list[int]:
    """The seeded order in which the training (or the held-out) queries are answered."""
    order = [i for i, q in enumerate(queries) if is_reserved(q) == heldout]
    if not order:
        part = "held-out (retention)" if heldout else "training"
        raise DeliaError(f"diverse.queries: no {part} queries in the set; it needs more queries")
    random.Random(seed).shuffle(order)
    return order


def cache_key(
    model_id: dict[str, Any], queries: list[dict[str, str]], cfg: DictConfig, heldout: bool = False
) -> str:
    settings = {
        "part": "heldout" if heldout else "train",
        "model": model_id,
        "queries": hashlib.sha256(json.dumps(queries, sort_keys=True).encode()).hexdigest(),
        "temperature": float(cfg.temperature),
        "top_p": float(cfg.top_p),
        "max_new_tokens": int(cfg.max_new_tokens),
        "use_reference": bool(cfg.use_reference),
        "seed": int(cfg.seed),
        "prompt_version": PROMPT_VERSION,
    }
    if cfg.get("sampler", "transformers") != "transformers":  # another backend draws other samples
        settings["sampler"] = str(cfg.sampler)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _checksum(record: dict[str, Any]) -> str:
    body = json.dumps({k: record[k] for k in ("i", "query_id", "query", "response")}, sort_keys=True)
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class SampleCache:
    """Append-only JSONL of samples with a checksum per record."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "samples.jsonl"

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the cache's lock: a second process waits here until the first one is done."""
        return file_lock(self.folder / "lock")

    def read(self) -> dict[int, dict[str, Any]]:
        """Intact records by index; torn or corrupted lines are skipped, duplicates keep the first."""
        records: dict[int, dict[str, Any]] = {}
        if not self.path.is_file():
            return records
        for raw in self.path.read_bytes().split(b"\n"):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("sha") == _checksum_or_none(record):
                records.setdefault(int(record["i"]), record)
        return records

    def drop_torn_tail(self) -> None:
        """Cut a last line that a kill left without its newline, so appends start on a fresh line."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, records: list[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps({**record, "sha": _checksum(record)}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _checksum_or_none(record: dict[str, Any]) -> str | None:
    try:
        return _checksum(record)
    except (KeyError, TypeError):
        return None


def query_for(i: int, order: list[int], queries: list[dict[str, str]]) -> dict[str, str]:
    """Sample ``i`` answers the ``i``-th query of a seeded order; past the set's size, queries repeat."""
    return queries[order[i % len(order)]]


@torch.inference_mode()
def generate_batch(model: Any, tokenizer: Any, prompts: list[str], cfg: DictConfig, seed: int) -> list[str]:
    """Sample one reply per prompt (left padding, stop at end of turn)."""
    torch.manual_seed(seed)
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = side
    out = model.generate(
        **enc,
        do_sample=True,
        temperature=float(cfg.temperature),
        top_p=float(cfg.top_p),
        max_new_tokens=int(cfg.max_new_tokens),
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    return [
        t.strip()
        for t in tokenizer.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
    ]


class TransformersSampler:
    """The default backend: batched transformers ``generate`` on the model already loaded."""

    def __init__(self, model: Any, tokenizer: Any, cfg: DictConfig) -> None:
        self.model, self.tokenizer, self.cfg = model, tokenizer, cfg

    def generate(self, prompts: list[str], seed: int) -> list[str]:
        return generate_batch(self.model, self.tokenizer, prompts, self.cfg, seed)

    def close(self) -> None:
        """Nothing to free: the model belongs to the caller."""


def make_sampler(model: Any, tokenizer: Any, cfg: DictConfig, model_path: str | None) -> Any:
    """The backend named by ``diverse.sampler``: ``transformers`` (default) or ``vllm`` (GPU)."""
    name = cfg.get("sampler", "transformers")
    if name == "transformers":
        return TransformersSampler(model, tokenizer, cfg)
    if name == "vllm":
        from delia.sampling_vllm import VllmSampler

        if model_path is None:
            raise DeliaError("diverse.sampler=vllm needs the model's folder or hub id; this caller gave none")
        return VllmSampler(model_path, tokenizer, cfg)
    raise DeliaError(f"diverse.sampler={name!r} is unknown: use transformers or vllm")


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

    ``diverse.sampler=vllm`` samples with vLLM from ``model_path`` (the model's folder) instead of
    transformers ``generate``. ``heldout=True`` answers the reserved queries instead (:func:`is_reserved`): the held-out slice of
    the diverse data on which retention is measured.
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
            with contextlib.closing(make_sampler(model, tokenizer, cfg, model_path)) as backend:
                _sample_missing(model, tokenizer, cfg, missing, order, queries, cache, backend.generate)
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
    generate: Any,
) -> None:
    was_training = model.training
    model.eval()
    prompts = {
        i: render(tokenizer, sampling_prompt(query_for(i, order, queries), cfg.use_reference), True)
        for i in missing
    }
    by_length = sorted(missing, key=lambda i: len(prompts[i]))  # similar lengths share a batch: less padding
    size = int(cfg.batch_size)
    for start in tqdm(range(0, len(by_length), size), desc="self-sampling diverse data", unit="batch"):
        batch = by_length[start : start + size]
        replies = generate([prompts[i] for i in batch], int(cfg.seed) * 1_000_003 + batch[0])
        records = []
        for i, reply in zip(batch, replies, strict=True):
            query = query_for(i, order, queries)
            records.append({"i": i, "query_id": str(query["id"]), "query": query["query"], "response": reply})
        cache.append(records)
    model.train(was_training)


def _as_record(sample: dict[str, Any]) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "user", "content": sample["query"]},
            {"role": "assistant", "content": sample["response"]},
        ],
        "origin": f"diverse/{sample['i']}",
    }
