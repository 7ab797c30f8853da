"""Retention (forgetting): what tuning costs the model outside the downstream task (DESIGN.md section 3).

Two yardsticks, each measured before and after tuning, reported as before / after / change:

- perplexity on a held-out slice of the diverse data: self-sampled answers to queries that training
  never samples (:func:`delia.sampling.is_reserved`), sampled with ``retention.sampling`` so that the
  slice is the same for every method of a sweep;
- accuracy on a small built-in general-knowledge probe (``delia/resources/knowledge_probe.jsonl``),
  greedy short answers scored by :func:`delia.probe.is_correct`.

The "before" numbers depend only on the base model and the slice, so they are cached per model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from delia.data.tokenize import generation_prompt
from delia.evaluate import eval_loss, generate_replies, write_json
from delia.probe import ProbeItem, load_probe, probe_accuracy, probe_messages
from delia.sampling import self_sample

log = logging.getLogger(__name__)
KEYS = ("ppl_heldout_diverse", "probe_acc")


def heldout_slice(
    model: Any, tokenizer: Any, cfg: DictConfig, cache_dir: Path, model_id: dict[str, Any]
) -> list[dict[str, Any]]:
    """The held-out diverse answers (sampled once per model into the diverse cache)."""
    return self_sample(
        model, tokenizer, cfg.sampling, int(cfg.heldout_size), cache_dir, model_id, heldout=True
    )


def measure(
    model: Any,
    tokenizer: Any,
    heldout: list[dict[str, Any]],
    probe: list[ProbeItem],
    cfg: DictConfig,
    max_length: int,
) -> dict[str, float]:
    """Held-out perplexity and probe accuracy of ``model`` as it is now."""
    was_training = model.training
    model.eval()
    loss = eval_loss(model, tokenizer, heldout, max_length, int(cfg.batch_size)) if heldout else math.nan
    prompts = [generation_prompt(tokenizer, probe_messages(item)) for item in probe]
    replies = generate_replies(model, tokenizer, prompts, int(cfg.max_new_tokens), int(cfg.batch_size))
    model.train(was_training)
    return {"ppl_heldout_diverse": math.exp(loss), "probe_acc": probe_accuracy(replies, probe)}


def measure_before(
    model: Any,
    tokenizer: Any,
    heldout: list[dict[str, Any]],
    probe: list[ProbeItem],
    cfg: DictConfig,
    max_length: int,
    cache_dir: Path,
    model_id: dict[str, Any],
) -> dict[str, float]:
    """:func:`measure` on the untuned model, cached under ``<cache>/retention/<key>.json``."""
    key = _before_key(heldout, probe, cfg, max_length, model_id)
    path = cache_dir / "retention" / f"{key}.json"
    if path.is_file():
        try:
            cached = json.loads(path.read_text())
            if all(isinstance(cached.get(k), int | float) for k in KEYS):
                return {k: float(cached[k]) for k in KEYS}
        except ValueError:
            log.warning("retention cache %s is unreadable; measuring again", path)
    before = measure(model, tokenizer, heldout, probe, cfg, max_length)
    write_json(path, before)
    return before


def _before_key(
    heldout: list[dict[str, Any]],
    probe: list[ProbeItem],
    cfg: DictConfig,
    max_length: int,
    model_id: dict[str, Any],
) -> str:
    body = {
        "model": model_id,
        "heldout": [r["messages"] for r in heldout],
        "probe": [(p.id, p.question, list(p.answers)) for p in probe],
        "max_new_tokens": int(cfg.max_new_tokens),
        "max_length": max_length,
    }
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def retention_metrics(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """``retention/<key>_before``, ``_after`` and ``_change`` (after - before) for each yardstick."""
    out: dict[str, float] = {}
    for key in KEYS:
        out[f"retention/{key}_before"] = before[key]
        out[f"retention/{key}_after"] = after[key]
        out[f"retention/{key}_change"] = after[key] - before[key]
    return out


def load_items(cfg: DictConfig) -> list[ProbeItem]:
    return load_probe(None if cfg.probe in (None, "builtin") else str(cfg.probe))
