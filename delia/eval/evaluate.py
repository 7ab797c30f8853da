"""End-of-run evaluation: eval loss, the task's generation metrics, the representation distances."""

from __future__ import annotations

import logging
from typing import Any

import torch
from omegaconf import DictConfig

from delia.console.progress import progress
from delia.data.datamodule import collate
from delia.data.tokenize import encode_all, generation_prompt
from delia.eval.formats import SEP_FORMAT, ReplyFormat, format_scores, negative_control_rate, reply_format
from delia.eval.representation import representation_report
from delia.infra.types import Record, Splits
from delia.model.generate import end_of_turn_texts, evaluating, generate_new_tokens
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
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    replies: dict[int, str] = {}
    stops = end_of_turn_texts(tokenizer)
    for start in progress(range(0, len(order), batch_size), desc=desc, unit="batch"):
        chunk = order[start : start + batch_size]
        new_tokens = generate_new_tokens(
            model, tokenizer, [prompts[i] for i in chunk], do_sample=False, max_new_tokens=max_new_tokens
        )
        texts = tokenizer.batch_decode(new_tokens, skip_special_tokens=False)
        for i, text in zip(chunk, texts, strict=True):
            replies[i] = _cut_at_end_of_turn(text, stops)
    return [replies[i] for i in range(len(prompts))]


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
    samples: dict[str, list[dict[str, str]]] = {}
    if cfg.eval.generate and cfg.dataset.kind == "translation":
        samples["eval"], scores = translation_eval(model, tokenizer, splits.get("eval", []), cfg)
        metrics.update({f"eval/{name}": value for name, value in scores.items()})
    fmt = task_format(cfg)
    if cfg.eval.generate and fmt is not None:
        for split in [name for name in GENERATED_SPLITS if splits.get(name)]:
            samples[split], scores = format_eval(model, tokenizer, splits[split], split, fmt, cfg)
            metrics.update({f"{split}/{name}": value for name, value in scores.items()})
    return {"metrics": metrics, "samples": samples}


def task_format(cfg: DictConfig) -> ReplyFormat | None:
    """The reply format the task is scored on: the ``<sep>`` task's, or ``eval.format`` for chat data."""
    if cfg.dataset.kind == "sep_format":
        return SEP_FORMAT
    return reply_format(cfg.eval) if cfg.dataset.kind == "chat" else None


def format_eval(
    model: Any, tokenizer: Any, records: list[dict[str, Any]], split: str, fmt: ReplyFormat, cfg: DictConfig
) -> tuple[list[dict[str, str]], dict[str, float]]:
    """Greedy replies to a split's prompts, scored for the format (and the label, where gold has one)."""
    prompts = [generation_prompt(tokenizer, r["messages"]) for r in records]
    replies = generate_replies(
        model, tokenizer, prompts, cfg.eval.max_new_tokens, cfg.eval.batch_size, f"evaluating {split}"
    )
    gold = [gold_label(r, fmt) for r in records]
    rows = [{"label": g or "", "reply": reply} for g, reply in zip(gold, replies, strict=True)]
    if split == "negative":
        return rows, {"format_rate": negative_control_rate(replies, fmt)}
    return rows, format_scores(replies, gold, fmt)


def gold_label(record: dict[str, Any], fmt: ReplyFormat) -> str | None:
    """The record's label: given (the ``<sep>`` task), or read from its reference reply with ``fmt``."""
    if "label" in record:
        return record["label"]
    last = record["messages"][-1]
    return fmt.label(last["content"]) if last["role"] == "assistant" else None


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
