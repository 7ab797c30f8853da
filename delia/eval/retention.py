"""Retention (forgetting): what tuning costs the model outside the downstream task.

Two yardsticks, each measured before and after tuning, reported as before / after / change:

- perplexity on a held-out slice of the diverse data: self-sampled answers to queries that training
  never samples (:func:`delia.diverse.queries.is_reserved`), sampled with ``retention.sampling`` so that the
  slice is the same for every method of a sweep (the recipe draws it, :func:`delia.recipe.heldout_slice`,
  and hands it here);
- accuracy on a small built-in general-knowledge probe (``delia/resources/knowledge_probe.jsonl``),
  greedy short answers scored by :func:`delia.eval.probe.is_correct`.

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
from delia.eval.evaluate import eval_loss, generate_replies
from delia.eval.probe import ProbeItem, load_probe, probe_accuracy, probe_messages
from delia.infra.files import write_json
from delia.model.generate import evaluating

log = logging.getLogger(__name__)
KEYS = ("ppl_heldout_diverse", "probe_acc")


def measure(
    model: Any,
    tokenizer: Any,
    heldout: list[dict[str, Any]],
    probe: list[ProbeItem],
    cfg: DictConfig,
    max_length: int,
    when: str = "",
) -> dict[str, float]:
    """Held-out perplexity and probe accuracy of ``model`` as it is now (``when``: for the progress bar)."""
    with evaluating(model):
        loss = eval_loss(model, tokenizer, heldout, max_length, int(cfg.batch_size)) if heldout else math.nan
        prompts = [generation_prompt(tokenizer, probe_messages(item)) for item in probe]
        replies = generate_replies(
            model, tokenizer, prompts, int(cfg.max_new_tokens), int(cfg.batch_size), f"retention probe{when}"
        )
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
    before = measure(model, tokenizer, heldout, probe, cfg, max_length, " before tuning")
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


def before_tuning(
    model: Any,
    tokenizer: Any,
    heldout: list[dict[str, Any]],
    cfg: DictConfig,
    model_id: dict[str, Any],
    new_token_ids: list[int],
) -> dict[str, float] | None:
    """Retention yardsticks of the untuned model (new rows included: they take part in the softmax)."""
    if not cfg.retention.enabled:
        return None
    rows = model.get_input_embeddings().weight[new_token_ids].detach().float().numpy().tobytes()
    key_id = {**model_id, "new_rows": hashlib.sha256(rows).hexdigest()[:16]}
    return measure_before(
        model,
        tokenizer,
        heldout,
        load_items(cfg.retention),
        cfg.retention,
        cfg.data.max_length,
        Path(cfg.paths.cache_dir),
        key_id,
    )


def after_tuning(
    model: Any, tokenizer: Any, heldout: list[dict[str, Any]], before: dict[str, float], cfg: DictConfig
) -> dict[str, float]:
    """``retention/*`` of the tuned model against ``before``."""
    after = measure(
        model,
        tokenizer,
        heldout,
        load_items(cfg.retention),
        cfg.retention,
        cfg.data.max_length,
        " after tuning",
    )
    return retention_metrics(before, after)
