"""Evaluation (conf/eval/): eval loss, the generation-based metrics of the task, the representation distances.

- :mod:`delia.eval.sep_metrics`: format, label and negative-control metrics of the ``<sep>`` task;
- :mod:`delia.eval.translation_metrics`: chrF, BLEU, BLEURT;
- :mod:`delia.eval.representation`: the distance of the new token to the prior description's key words;
- :mod:`delia.eval.retention` and :mod:`delia.eval.probe`: what tuning costs outside the task.
"""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig

from delia.console.progress import progress
from delia.data.datamodule import collate
from delia.data.tokenize import encode_all, generation_prompt
from delia.eval.representation import representation_distances
from delia.eval.sep_metrics import format_scores, negative_control_rate
from delia.model.generate import evaluating, generate_new_tokens
from delia.module import token_losses

log = logging.getLogger(__name__)


@torch.inference_mode()
def eval_loss(
    model: Any, tokenizer: Any, records: list[dict[str, Any]], max_length: int, batch_size: int
) -> float:
    """Mean next-token loss over the assistant tokens of ``records``."""
    items = encode_all(
        tokenizer,
        [r for r in records if r["messages"][-1]["role"] == "assistant"],
        max_length,
        "truncate",
        "eval",
    )
    total, tokens = 0.0, 0
    for start in range(0, len(items), batch_size):
        batch = collate(items[start : start + batch_size], tokenizer.pad_token_id)
        batch = {k: v.to(model.device) for k, v in batch.items()}
        sums, counts = token_losses(model, batch)
        total, tokens = total + float(sums.sum()), tokens + int(counts.sum())
    return total / tokens if tokens else float("nan")


def generate_replies(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generating",
) -> list[str]:
    """Greedy replies, batched with left padding; prompts sorted by length to waste less padding."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: dict[int, str] = {}
    for start in progress(range(0, len(order), batch_size), desc=desc, unit="batch"):
        chunk = order[start : start + batch_size]
        new_tokens = generate_new_tokens(
            model, tokenizer, [prompts[i] for i in chunk], do_sample=False, max_new_tokens=max_new_tokens
        )
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=False)
        for i, text in zip(chunk, texts, strict=True):
            replies[i] = _cut_at_end_of_turn(text, tokenizer)
    return [replies[i] for i in range(len(prompts))]


def _cut_at_end_of_turn(text: str, tokenizer: Any) -> str:
    """Keep the reply up to the end-of-turn token (the new special token itself is kept visible)."""
    for stop in (tokenizer.eos_token, tokenizer.pad_token):
        if stop and stop in text:
            text = text.split(stop)[0]
    return text.strip()


def evaluate(
    model: Any, tokenizer: Any, splits: dict[str, list[dict[str, Any]]], cfg: DictConfig
) -> dict[str, Any]:
    """All metrics of a run. ``splits`` holds ``eval`` and, for the sep_format task, ``heldout``/``negative``."""
    with evaluating(model):
        return _evaluate(model, tokenizer, splits, cfg)


def _evaluate(
    model: Any, tokenizer: Any, splits: dict[str, list[dict[str, Any]]], cfg: DictConfig
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "eval/loss": eval_loss(
            model, tokenizer, splits.get("eval", []), cfg.data.max_length, cfg.eval.batch_size
        )
    }
    token = cfg.dataset.get("special_token")
    if token and cfg.get("representation"):
        layers = list(cfg.representation.layers) if cfg.representation.layers else None
        keywords = list(cfg.representation.keywords)
        metrics.update(representation_distances(model, tokenizer, token, keywords, layers))
    samples: dict[str, list[dict[str, str]]] = {}
    if cfg.eval.generate and cfg.dataset.kind == "translation":
        samples["eval"], scores = translation_eval(model, tokenizer, splits.get("eval", []), cfg)
        metrics.update({f"eval/{name}": value for name, value in scores.items()})
    if cfg.eval.generate and cfg.dataset.kind == "sep_format":
        for split in ("eval", "heldout", "negative"):
            records = splits.get(split, [])
            prompts = [generation_prompt(tokenizer, r["messages"]) for r in records]
            replies = generate_replies(
                model, tokenizer, prompts, cfg.eval.max_new_tokens, cfg.eval.batch_size, f"evaluating {split}"
            )
            samples[split] = [
                {"label": r["label"], "reply": reply} for r, reply in zip(records, replies, strict=True)
            ]
            if split == "negative":
                metrics["negative/format_rate"] = negative_control_rate(replies)
            else:
                scores = format_scores(replies, [r["label"] for r in records])
                metrics.update({f"{split}/{name}": value for name, value in scores.items()})
    return {"metrics": metrics, "samples": samples}


def translation_eval(
    model: Any, tokenizer: Any, records: list[dict[str, Any]], cfg: DictConfig
) -> tuple[list[dict[str, str]], dict[str, float]]:
    """Greedy translations of the eval split, scored with chrF and BLEU (and BLEURT when configured)."""
    from delia.eval.translation_metrics import translation_scores

    prompts = [generation_prompt(tokenizer, r["messages"]) for r in records]
    hypotheses = generate_replies(
        model, tokenizer, prompts, cfg.eval.max_new_tokens, cfg.eval.batch_size, "evaluating translations"
    )
    references = [r["reference"] for r in records]
    scores = translation_scores(hypotheses, references, cfg.eval.get("bleurt_checkpoint"))
    rows = [
        {"source": r["source_text"], "reference": r["reference"], "reply": h}
        for r, h in zip(records, hypotheses, strict=True)
    ]
    return rows, scores


def results_table(metrics: dict[str, Any]) -> str:
    """A short plain-text table of the run's metrics."""
    width = max(len(k) for k in metrics) if metrics else 0
    lines = [f"{'metric'.ljust(width)}  value", f"{'-' * width}  -----"]
    for key, value in metrics.items():
        shown = f"{value:.4f}" if isinstance(value, float) else str(value)
        lines.append(f"{key.ljust(width)}  {shown}")
    return "\n".join(lines)
