"""Queries the model writes itself (``diverse.queries=self``), as in Magpie (Xu et al. 2024).

The chat template is rendered up to where a user turn's text begins, and the model continues from
there: what it writes until the end of the turn is a user query in its own distribution. Then the whole
diverse set, questions and answers, comes from the model, as step 3 of the paper's algorithm says, and
it never runs out. Empty and duplicate queries (and the probe's questions) are dropped. The queries are
cached like the answers: ``<cache>/queries/<key>.jsonl``, keyed by the model and the settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from delia.data.tokenize import render
from delia.eval.probe import normalize, probe_questions
from delia.infra.errors import DeliaError
from delia.infra.files import atomic_write_text, file_lock
from delia.model.generate import evaluating, generate_new_tokens

log = logging.getLogger(__name__)
MARK = "\x00query\x00"
ROUNDS = 8  # batches of attempts per missing query before giving up


def user_prefix(tokenizer: Any) -> str:
    """The chat template's text up to where a user's words begin (system turn included)."""
    text = render(tokenizer, [{"role": "user", "content": MARK}], add_generation_prompt=False)
    return text[: text.index(MARK)]


def _key(model_id: dict[str, Any], cfg: DictConfig, n: int) -> str:
    settings = {"model": model_id, "n": n, "settings": OmegaConf.to_container(cfg.self_queries, resolve=True)}
    settings["seed"] = int(cfg.seed)
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _write_batch(model: Any, tokenizer: Any, cfg: DictConfig, size: int, seed: int) -> list[str]:
    torch.manual_seed(seed)
    options = cfg.self_queries
    new_tokens = generate_new_tokens(
        model,
        tokenizer,
        [user_prefix(tokenizer)] * size,
        do_sample=True,
        temperature=float(options.temperature),
        top_p=float(options.top_p),
        max_new_tokens=int(options.max_new_tokens),
    )
    return [text.strip() for text in tokenizer.batch_decode(new_tokens, skip_special_tokens=True)]


def _collect(model: Any, tokenizer: Any, cfg: DictConfig, n: int) -> list[str]:
    """``n`` distinct, non-empty queries that are not probe questions."""
    seen, queries = set(probe_questions()), []
    batch = int(cfg.batch_size)
    with evaluating(model):
        for attempt in range(ROUNDS * max(1, -(-n // batch))):
            for text in _write_batch(model, tokenizer, cfg, batch, int(cfg.seed) * 7919 + attempt):
                key = normalize(text)
                if key and key not in seen:
                    seen.add(key)
                    queries.append(text)
            if len(queries) >= n:
                return queries[:n]
    raise DeliaError(
        f"diverse.queries=self: the model wrote only {len(queries)} distinct queries of the {n} needed; "
        f"raise diverse.self_queries.temperature or use diverse.queries=builtin"
    )


def self_written_queries(
    model: Any, tokenizer: Any, cfg: DictConfig, n: int, cache_dir: Path, model_id: dict[str, Any]
) -> list[dict[str, str]]:
    """``n`` queries written by the model (from the cache when there), as query records."""
    path = Path(cache_dir) / "queries" / f"{_key(model_id, cfg, n)}.jsonl"
    with file_lock(path.with_suffix(".lock")):
        if not path.is_file():
            log.info("diverse.queries=self: the model writes %d queries into %s", n, path)
            lines = [
                json.dumps({"id": f"self{i}", "query": q})
                for i, q in enumerate(_collect(model, tokenizer, cfg, n))
            ]
            atomic_write_text(path, "\n".join(lines) + "\n")
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
