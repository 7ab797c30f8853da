"""Validate a composed config before anything heavy starts; each problem is one line naming the option."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from delia.baselines import check_combination
from delia.data.mixing import diverse_ratio
from delia.data.tokenize import OVERLENGTH_CHOICES
from delia.errors import DeliaError
from delia.schedule import build_schedule
from delia.security import check_inside_roots

TOKEN_INIT = ("resize", "random", "mean", "description")
DATASET_KINDS = ("sep_format", "chat", "translation")


def _positive(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, int) or value <= 0:
        raise DeliaError(f"{key}={value} must be a positive integer")


def validate(cfg: DictConfig) -> None:
    """Check every option the recipe relies on; raise :class:`DeliaError` on the first problem."""
    for key in (
        "trainer.max_steps",
        "data.batch_size",
        "data.max_length",
        "eval.batch_size",
        "eval.max_new_tokens",
    ):
        _positive(cfg, key)
    if cfg.data.on_overlength not in OVERLENGTH_CHOICES:
        raise DeliaError(
            f"data.on_overlength={cfg.data.on_overlength!r} is unknown: use {', '.join(OVERLENGTH_CHOICES)}"
        )
    if cfg.diverse.ratio is None or float(cfg.diverse.ratio) < 0:
        raise DeliaError(f"diverse.ratio={cfg.diverse.ratio} must be >= 0 (0 means no diverse data)")
    if cfg.diverse.name != "none":
        for key in ("diverse.max_new_tokens", "diverse.batch_size"):
            _positive(cfg, key)
        if not 0 < float(cfg.diverse.top_p) <= 1 or float(cfg.diverse.temperature) <= 0:
            raise DeliaError("diverse.top_p must be in (0, 1] and diverse.temperature > 0")
    _validate_dataset(cfg.dataset)
    _validate_data_roots(cfg)
    if cfg.token_init.strategy not in TOKEN_INIT:
        raise DeliaError(
            f"token_init.strategy={cfg.token_init.strategy!r} is unknown: use {', '.join(TOKEN_INIT)}"
        )
    if cfg.token_init.strategy == "description" and cfg.dataset.kind != "sep_format":
        raise DeliaError("token_init=description needs a task with a prior description (dataset=sep_format)")
    build_schedule(cfg.schedule)
    check_combination(cfg)
    _validate_steps(cfg)
    _validate_retention(cfg)
    if not isinstance(cfg.seed, int):
        raise DeliaError(f"seed={cfg.seed!r} must be an integer")
    if str(cfg.resume) not in ("True", "False", "auto"):
        raise DeliaError(f"resume={cfg.resume!r}: use true, false or auto")
    if (
        cfg.schedule.name == "two_stage"
        and diverse_ratio(cfg.diverse) == 0
        and float(cfg.schedule.task_fraction_k) == 0
    ):
        raise DeliaError(
            "schedule=two_stage has nothing to train on in stage 2: set diverse.ratio > 0 or task_fraction_k > 0"
        )


def _validate_retention(cfg: DictConfig) -> None:
    if not cfg.retention.enabled:
        return
    for key in ("retention.heldout_size", "retention.max_new_tokens", "retention.batch_size"):
        _positive(cfg, key)


def _validate_data_roots(cfg: DictConfig) -> None:
    """With ``paths.data_roots`` set, every data file must lie inside one of them (symlinks resolved)."""
    roots = cfg.paths.get("data_roots")
    if not roots:
        return
    files = {"dataset.path": cfg.dataset.get("path"), "dataset.eval_path": cfg.dataset.get("eval_path")}
    if cfg.diverse.get("queries") not in (None, "builtin"):
        files["diverse.queries"] = cfg.diverse.queries
    for option, path in files.items():
        if path and not OmegaConf.is_missing(cfg, option):
            check_inside_roots(path, list(roots), option)


def _validate_steps(cfg: DictConfig) -> None:
    """A schedule must reach its steps: warmup, validation and checkpoints inside ``max_steps``."""
    steps = int(cfg.trainer.max_steps)
    warmup = cfg.lr_scheduler.get("num_warmup_steps")
    if warmup is not None and int(warmup) >= steps:
        raise DeliaError(
            f"lr_scheduler.num_warmup_steps={warmup} >= trainer.max_steps={steps}: the schedule never gets past "
            f"warmup; lower the warmup or raise trainer.max_steps"
        )
    batches = steps * int(cfg.trainer.accumulate_grad_batches)
    interval = cfg.trainer.get("val_check_interval")
    if isinstance(interval, int) and interval > batches:
        raise DeliaError(
            f"trainer.val_check_interval={interval} exceeds the {batches} training batches: no validation would run; "
            f"set it <= trainer.max_steps x accumulate_grad_batches"
        )
    every = cfg.get("checkpoint_every_n_steps")
    if every is not None and not 0 < int(every) <= steps:
        raise DeliaError(f"checkpoint_every_n_steps={every} must be within 1..trainer.max_steps={steps}")
    if cfg.schedule.name == "two_stage" and round(steps * float(cfg.schedule.stage1_fraction)) in (0, steps):
        raise DeliaError(
            f"schedule.stage1_fraction={cfg.schedule.stage1_fraction} leaves one stage without steps at "
            f"trainer.max_steps={steps}; pick a fraction strictly between the two"
        )


def _validate_dataset(cfg: DictConfig) -> None:
    if cfg.kind not in DATASET_KINDS:
        raise DeliaError(f"dataset.kind={cfg.kind!r} is unknown: use {', '.join(DATASET_KINDS)}")
    if cfg.kind == "chat":
        if OmegaConf.is_missing(cfg, "path") or not cfg.path:
            raise DeliaError("dataset=jsonl needs a file: add dataset.path=/path/to/train.jsonl")
        return
    if cfg.kind == "translation":
        for key in ("train_size", "eval_size"):
            if cfg[key] is not None and (not isinstance(cfg[key], int) or cfg[key] <= 0):
                raise DeliaError(f"dataset.{key}={cfg[key]} must be a positive integer (or null: all)")
        return
    if not isinstance(cfg.train_size, int) or cfg.train_size <= 0:
        raise DeliaError(f"dataset.train_size={cfg.train_size} must be a positive integer")
    for key in ("eval_size", "heldout_size", "negative_size"):
        if not isinstance(cfg[key], int) or cfg[key] < 0:
            raise DeliaError(f"dataset.{key}={cfg[key]} must be an integer >= 0")
    for key in ("yes_fraction", "eval_yes_fraction", "eval_fact_fraction"):
        if not 0 <= float(cfg[key]) <= 1:
            raise DeliaError(f"dataset.{key}={cfg[key]} must be within [0, 1]")
    if not cfg.special_token:
        raise DeliaError("dataset.special_token is empty: the sep_format task needs one, e.g. '<sep>'")


def plain(cfg: DictConfig) -> dict[str, Any]:
    """The resolved config as plain Python containers (for peft, wandb, JSON)."""
    return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]


def refuse_finished_run(run_dir: Path, overwrite: bool) -> None:
    """A run dir that already holds a finished run is not overwritten unless ``overwrite=true``."""
    metrics = run_dir / "metrics.json"
    if metrics.is_file() and not overwrite:
        try:
            json.loads(metrics.read_text())
        except ValueError:
            return
        raise DeliaError(
            f"{run_dir} already holds a finished run (metrics.json); pick another hydra.run.dir or pass overwrite=true"
        )
