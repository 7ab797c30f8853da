"""Re-score a finished job's generations (``samples.json``) with today's format measures, without a model.

Format accuracy and the negative control once counted a reply as using the format only when it was a
complete dict, so a "do NOT use the format" reply cut at the budget after opening the dict counted as
obeying. The generations are kept, so the new measures (begins / complete / cut, :mod:`delia.eval.formats`)
can be computed from them: :func:`rescore_job` writes ``<job>/rescored.json`` beside ``metrics.json``
(which stays as the run wrote it), and ``delia-report`` reads the re-scored values over the old ones.

*Cut* is inferred where the generations do not record it (jobs from before the measure): a reply whose
re-encoded length is at least the job's eval budget minus :data:`CUT_SLACK` tokens ran to the budget (a
reply that ended with an end of turn within the budget but that close to it is counted as cut too).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from delia.eval.formats import SEP_FORMAT, format_scores, negative_control, reply_format
from delia.infra.errors import DeliaError
from delia.infra.files import write_json

RESCORED = "rescored.json"
CUT_SLACK = 2  # tokens: re-encoding a decoded, stripped reply can differ from the generated ids by one or two


def job_format(config: Any) -> Any:
    """The reply format a job was scored on (the ``<sep>`` task's, or its ``eval.format``)."""
    if config.dataset.kind == "sep_format":
        return SEP_FORMAT
    fmt = reply_format(config.eval) if config.dataset.kind == "chat" else None
    if fmt is None:
        raise DeliaError(f"{config.dataset.kind}: a job without a reply format has nothing to re-score")
    return fmt


def inferred_cut(tokenizer: Any, replies: list[str], budget: int) -> list[bool]:
    return [len(tokenizer.encode(r, add_special_tokens=False)) >= budget - CUT_SLACK for r in replies]


def rescore_job(job: Path, tokenizer: Any) -> dict[str, float]:
    """Today's format measures of ``job``'s generations, written to ``<job>/rescored.json``."""
    samples_file, config_file = job / "samples.json", job / "config.yaml"
    if not samples_file.is_file() or not config_file.is_file():
        raise DeliaError(f"{job}: no samples.json and config.yaml to re-score (a job dir of delia-train)")
    config = OmegaConf.load(config_file)
    fmt, budget = job_format(config), int(config.eval.max_new_tokens)
    metrics: dict[str, float] = {}
    for split, rows in json.loads(samples_file.read_text()).items():
        replies = [row["reply"] for row in rows]
        cut = [bool(row["cut"]) for row in rows] if rows and "cut" in rows[0] else None
        cut = cut if cut is not None else inferred_cut(tokenizer, replies, budget)
        if split == "negative":
            scores = negative_control(replies, fmt, cut)
        else:
            scores = format_scores(replies, [row.get("label") or None for row in rows], fmt, cut)
        metrics.update({f"{split}/{name}": value for name, value in scores.items()})
    write_json(job / RESCORED, {"metrics": metrics, "budget": budget, "cut_slack": CUT_SLACK})
    return metrics


def rescore_tree(root: Path, tokenizer: Any) -> list[Path]:
    """Re-score every job under ``root`` that has generations; the jobs re-scored."""
    jobs = sorted(p.parent for p in root.rglob("samples.json") if (p.parent / "config.yaml").is_file())
    for job in jobs:
        rescore_job(job, tokenizer)
    return jobs
