"""End-of-run evaluation: eval loss, the task's generation metrics, the representation distances."""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
from omegaconf import DictConfig

from delia.console.progress import progress
from delia.data.datamodule import collate
from delia.data.tokenize import encode_all, generation_prompt
from delia.eval.formats import SEP_FORMAT, ReplyFormat, format_scores, negative_control, reply_format
from delia.eval.representation import representation_report
from delia.infra.types import Record, Splits
from delia.model.generate import end_of_turn_ids, end_of_turn_texts, evaluating, finished, generate_new_tokens
from delia.module import token_losses

log = logging.getLogger(__name__)
# the splits whose replies are generated and scored for the format, in this order, where a task has them
GENERATED_SPLITS = ("seen_wordings", "unseen_wordings", "eval", "negative")


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
    return generate_with_cuts(model, tokenizer, prompts, max_new_tokens, batch_size, desc)[0]


def generate_with_cuts(
    model: Any,
    tokenizer: Any,
    prompts: list[str],
    max_new_tokens: int,
    batch_size: int,
    desc: str = "generating",
) -> tuple[list[str], list[bool]]:
    """:func:`generate_replies`, and per reply whether it was cut: no end of turn within the budget."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: dict[int, tuple[str, bool]] = {}
    stops, stop_ids = end_of_turn_texts(tokenizer), end_of_turn_ids(tokenizer)
    for start in progress(range(0, len(order), batch_size), desc=desc, unit="batch"):
        chunk = order[start : start + batch_size]
        new_tokens = generate_new_tokens(
            model, tokenizer, [prompts[i] for i in chunk], do_sample=False, max_new_tokens=max_new_tokens
        )
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=False)
        ended = finished(new_tokens, stop_ids)
        for i, text, done in zip(chunk, texts, ended, strict=True):
            replies[i] = (_cut_at_end_of_turn(text, stops), not done)
    return [replies[i][0] for i in range(len(prompts))], [replies[i][1] for i in range(len(prompts))]


def eval_budget(cfg: DictConfig, splits: Splits, tokenizer: Any) -> int:
    """The generation budget: ``eval.max_new_tokens`` if set, else from the data: ``eval.budget_factor``
    times the longest reference reply of the generated splits in tokens (its end of turn included)."""
    if cfg.eval.get("max_new_tokens") is not None:
        return int(cfg.eval.max_new_tokens)
    lengths = [
        len(tokenizer.encode(reference, add_special_tokens=False)) + 1
        for name in (*GENERATED_SPLITS, "eval")
        for record in splits.get(name, [])
        if (reference := _reference_reply(record)) is not None
    ]
    return math.ceil(max(lengths, default=16) * float(cfg.eval.get("budget_factor", 2.0)))


def _reference_reply(record: Record) -> str | None:
    if "reference" in record:  # translation
        return str(record["reference"])
    last = record["messages"][-1]
    return str(last["content"]) if last["role"] == "assistant" else None


def _cut_at_end_of_turn(text: str, stops: list[str]) -> str:
    """Keep the reply up to the end of its turn (the new special token itself is kept visible)."""
    for stop in stops:
        if stop in text:
            text = text.split(stop)[0]
    return text.strip()


def evaluate(
    model: Any,
    tokenizer: Any,
    splits: Splits,
    cfg: DictConfig,
    loss_records: list[Record],
    description: str | None = None,
) -> dict[str, Any]:
    """All metrics of a run. ``splits`` holds the generated splits (``eval``; for the ``<sep>`` task
    ``seen_wordings``/``unseen_wordings``/``negative``); ``loss_records``: what ``eval/loss`` is computed
    on; ``description``: the prior description the new token stands for (None: the task has none)."""
    with evaluating(model):
        return _evaluate(model, tokenizer, splits, cfg, loss_records, description)


def _evaluate(
    model: Any,
    tokenizer: Any,
    splits: Splits,
    cfg: DictConfig,
    loss_records: list[Record],
    description: str | None,
) -> dict[str, Any]:
    metrics: dict[str, Any] = {
        "eval/loss": eval_loss(model, tokenizer, loss_records, cfg.data.max_length, cfg.eval.batch_size)
    }
    metrics.update(run_representation(model, tokenizer, cfg, description))
    samples: dict[str, list[dict[str, Any]]] = {}
    budget = eval_budget(cfg, splits, tokenizer)
    if cfg.eval.generate and cfg.dataset.kind == "translation":
        samples["eval"], scores = translation_eval(model, tokenizer, splits.get("eval", []), cfg, budget)
        metrics.update({f"eval/{name}": value for name, value in scores.items()})
    fmt = task_format(cfg)
    if cfg.eval.generate and fmt is not None:
        for split in [name for name in GENERATED_SPLITS if splits.get(name)]:
            samples[split], scores = format_eval(model, tokenizer, splits[split], split, fmt, cfg, budget)
            metrics.update({f"{split}/{name}": value for name, value in scores.items()})
    if cfg.eval.generate and samples:
        metrics["eval/max_new_tokens"] = float(budget)
    return {"metrics": metrics, "samples": samples}


def task_format(cfg: DictConfig) -> ReplyFormat | None:
    """The reply format the task is scored on: the ``<sep>`` task's, or ``eval.format`` for chat data."""
    if cfg.dataset.kind == "sep_format":
        return SEP_FORMAT
    return reply_format(cfg.eval) if cfg.dataset.kind == "chat" else None


def format_eval(
    model: Any,
    tokenizer: Any,
    records: list[Record],
    split: str,
    fmt: ReplyFormat,
    cfg: DictConfig,
    budget: int,
) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Greedy replies to a split's prompts (at most ``budget`` new tokens), scored for the format (begins,
    complete, cut) and the label, where gold has one; the negative control for the ``negative`` split."""
    prompts = [generation_prompt(tokenizer, r["messages"]) for r in records]
    replies, cut = generate_with_cuts(
        model, tokenizer, prompts, budget, cfg.eval.batch_size, f"evaluating {split}"
    )
    gold = [gold_label(r, fmt) for r in records]
    rows = [
        {"label": g or "", "reply": reply, "cut": was_cut}
        for g, reply, was_cut in zip(gold, replies, cut, strict=True)
    ]
    if split == "negative":
        return rows, negative_control(replies, fmt, cut)
    return rows, format_scores(replies, gold, fmt, cut)


def gold_label(record: dict[str, Any], fmt: ReplyFormat) -> str | None:
    """The record's label: given (the ``<sep>`` task), or read from its reference reply with ``fmt``."""
    if "label" in record:
        return record["label"]
    last = record["messages"][-1]
    return fmt.label(last["content"]) if last["role"] == "assistant" else None


def translation_eval(
    model: Any, tokenizer: Any, records: list[Record], cfg: DictConfig, budget: int
) -> tuple[list[dict[str, str]], dict[str, float]]:
    """Greedy translations of the eval split, scored with chrF and BLEU (and BLEURT when configured)."""
    from delia.eval.translation_metrics import translation_scores

    prompts = [generation_prompt(tokenizer, r["messages"]) for r in records]
    hypotheses = generate_replies(
        model, tokenizer, prompts, budget, cfg.eval.batch_size, "evaluating translations"
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


def run_representation(
    model: Any, tokenizer: Any, cfg: DictConfig, description: str | None = None
) -> dict[str, float]:
    """The representation measures of the task's new token now ({} when the task adds none);
    ``description``: the prior description, whose tokens give the description-centroid distances."""
    token = cfg.dataset.get("special_token")
    if not token or not cfg.get("representation"):
        return {}
    layers = list(cfg.representation.layers) if cfg.representation.layers else None
    keywords = list(cfg.representation.keywords)
    return representation_report(model, tokenizer, token, keywords, layers, description)
