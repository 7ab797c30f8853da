"""Validate a composed config before anything heavy starts; each problem is one line naming the option.

Two layers: each group's own schema (types, ranges, no unknown keys; ``delia/<group>/schema.py`` and
the ``_target_`` groups' signatures, see :mod:`delia.infra.schema`), then the rules that cross groups
(a baseline that needs a translation task, a schedule that must reach its steps, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import PositiveInt

from delia.baselines import check_combination, own_training
from delia.baselines.schema import Ablation, Baseline
from delia.callbacks import wanted
from delia.data.mixing import diverse_count, diverse_ratio
from delia.data.schema import Data
from delia.dataset.schema import DATASET_SCHEMAS
from delia.dataset.wordings import check_options as check_wordings
from delia.dataset.wordings.schema import Wordings
from delia.diverse.queries import check_enough, load_queries, query_order
from delia.diverse.samplers import check_installed
from delia.diverse.schema import DIVERSE_SCHEMAS
from delia.eval.formats import reply_format
from delia.eval.schema import Eval, Representation, Retention
from delia.infra.errors import DeliaError
from delia.infra.schema import Closed, check, check_target, pick
from delia.infra.security import check_inside_roots
from delia.model.schema import MODEL_SCHEMAS, Peft, TokenInit
from delia.protocol import ProtocolConfig
from delia.schedule import build_schedule


class Paths(Closed):
    output_root: str
    cache_dir: str
    data_roots: list[str] | None = None
    run_dir: str


class Launcher(Closed):
    gpus_per_job: PositiveInt | None = None
    num_gpus: PositiveInt | None = None
    pool_dir: str


class TopLevel(Closed):
    """The keys of conf/train.yaml that are not groups."""

    task_name: str
    seed: int
    checkpoint_every_n_steps: PositiveInt | None = None
    overwrite: bool = False
    resume: bool | Literal["auto"] = False
    ckpt_path: str | None = None
    allow_pickle: bool = False
    debug_traceback: bool = False
    notes: str | None = None
    optimized_metric: str | None = None


# group -> how its node is checked
OWN_SCHEMAS: dict[str, type[Closed]] = {
    "token_init": TokenInit,
    "peft": Peft,
    "baseline": Baseline,
    "ablation": Ablation,
    "eval": Eval,
    "representation": Representation,
    "retention": Retention,
    "data": Data,
    "paths": Paths,
    "launcher": Launcher,
    "protocol": ProtocolConfig,
    "wordings": Wordings,
}
CHOSEN_BY: dict[str, tuple[dict[str, type[Closed]], str]] = {
    "model": (MODEL_SCHEMAS, "source"),
    "dataset": (DATASET_SCHEMAS, "kind"),
    "diverse": (DIVERSE_SCHEMAS, "name"),
}
TARGETS = ("trainer", "optimizer", "lr_scheduler")
EXTRA_TOP = ("bench",)  # checked by the tool that adds them


def resolved(cfg: DictConfig) -> dict[str, Any]:
    """The config with every interpolation resolved; a broken one is a one-line error.

    Outside a Hydra app (tests, notebooks) the ``${hydra:...}`` values cannot resolve: they are checked
    as the text they hold.
    """
    if not HydraConfig.initialized():
        cfg = _without_hydra_interpolations(cfg)
    try:
        return OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)  # type: ignore[return-value]
    except OmegaConfBaseException as err:
        raise DeliaError(f"{err.full_key or 'config'}: {str(err).splitlines()[0]}") from None


def _without_hydra_interpolations(cfg: DictConfig) -> DictConfig:
    copy = cfg.copy()
    raw = OmegaConf.to_container(cfg, resolve=False)
    for key, value in _leaf_items(raw, ""):
        if isinstance(value, str) and "${hydra:" in value:
            OmegaConf.update(copy, key, value.replace("${hydra:", "hydra:{"), merge=False)
    return copy


def _leaf_items(node: Any, prefix: str) -> list[tuple[str, Any]]:
    if isinstance(node, dict):
        return [item for k, v in node.items() for item in _leaf_items(v, f"{prefix}{k}.")]
    return [(prefix.rstrip("."), node)]


def check_schemas(values: dict[str, Any]) -> None:
    """Every group against its schema; the top-level keys against :class:`TopLevel`."""
    for group, schema in OWN_SCHEMAS.items():
        check(schema, values.get(group), group)
    for group, (schemas, key) in CHOSEN_BY.items():
        pick(schemas, values.get(group), key, group)
    trainer = values.get("trainer")
    if isinstance(trainer, dict):  # values the recipe resolves itself before Lightning sees them
        derived = {"max_steps": None, "precision": "auto"}  # the protocol's steps; delia.infra.precision
        kept = {k: v for k, v in trainer.items() if k not in derived or v != derived[k]}
        values = {**values, "trainer": kept}
    for group in TARGETS:
        check_target(values.get(group), group)
    for name, node in (values.get("logger") or {}).items():
        check_target(node, f"logger.{name}")
    for name, node in (values.get("callbacks") or {}).items():
        if not isinstance(node, dict) or wanted(node, values):  # a callback that is not built is not checked
            check_target(node, f"callbacks.{name}")
    build_schedule(OmegaConf.create(values["schedule"]))
    groups = (*OWN_SCHEMAS, *CHOSEN_BY, *TARGETS, "logger", "callbacks", "schedule", *EXTRA_TOP)
    check(TopLevel, {k: v for k, v in values.items() if k not in groups}, "")


def validate(cfg: DictConfig) -> None:
    """Check every option the recipe relies on; raise :class:`DeliaError` on the first problem."""
    if cfg.dataset.get("kind") == "chat" and OmegaConf.is_missing(cfg.dataset, "path"):
        raise DeliaError("dataset=jsonl needs a file: add dataset.path=/path/to/train.jsonl")
    check_schemas(resolved(cfg))
    _fixed_steps_positive(cfg)
    _eval_format(cfg)
    check_wordings(cfg)  # conf/wordings/ and dataset.instruction beyond their types
    if cfg.token_init.strategy == "description" and cfg.dataset.kind != "sep_format":
        raise DeliaError("token_init=description needs a task with a prior description (dataset=sep_format)")
    check_combination(cfg)
    _validate_data_roots(cfg)
    _enough_queries(cfg)
    _samplers_installed(cfg)
    if (
        cfg.schedule.name == "two_stage"
        and diverse_ratio(cfg.diverse) == 0
        and float(cfg.schedule.task_fraction_k) == 0
    ):
        raise DeliaError(
            "schedule=two_stage has nothing to train on in stage 2: set diverse.ratio > 0 or task_fraction_k > 0"
        )


def _eval_format(cfg: DictConfig) -> None:
    """The reply format ``eval.format`` names is built as evaluation will build it (a regex compiled, the
    json_keys options checked), so that a bad pattern is refused before training, not after it."""
    kind = cfg.eval.get("format")
    if kind is None:
        return
    if kind == "regex" and not cfg.eval.get("pattern"):
        raise DeliaError("eval.format=regex needs eval.pattern='<regular expression>' (quoted)")
    reply_format(cfg.eval)


def _enough_queries(cfg: DictConfig) -> None:
    """A query set (built-in or a file) holds a distinct training query per diverse sample, unless
    ``diverse.allow_repeats=true``; checked here where the task's size is exact (the <sep> task's
    ``train_size``), otherwise when the samples are drawn. ``diverse.queries=self`` never runs out."""
    ratio = diverse_ratio(cfg.diverse)
    if ratio == 0 or cfg.diverse.queries == "self" or cfg.dataset.kind != "sep_format":
        return
    n = diverse_count(int(cfg.dataset.train_size), ratio)
    order = query_order(load_queries(str(cfg.diverse.queries)), int(cfg.diverse.seed), heldout=False)
    check_enough(n, order, bool(cfg.diverse.get("allow_repeats", False)))


def _samplers_installed(cfg: DictConfig) -> None:
    """The sampler backends this run will open are installed (the diverse data's, the retention slice's)."""
    if diverse_ratio(cfg.diverse) > 0:
        check_installed(str(cfg.diverse.get("sampler", "transformers")), "diverse.sampler")
    if cfg.retention.enabled or "buffering" in cfg.callbacks:
        check_installed(
            str(cfg.retention.sampling.get("sampler", "transformers")), "retention.sampling.sampler"
        )


def _fixed_steps_positive(cfg: DictConfig) -> None:
    steps = cfg.trainer.get("max_steps")
    if steps is not None and (not isinstance(steps, int) or steps <= 0):
        raise DeliaError(
            f"trainer.max_steps={steps} must be a positive integer, or null to derive the steps from the data "
            f"(protocol=exposure)"
        )


def _positive(cfg: DictConfig, key: str) -> None:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, int) or value <= 0:
        raise DeliaError(f"{key}={value} must be a positive integer")


def _validate_data_roots(cfg: DictConfig) -> None:
    """With ``paths.data_roots`` set, every data file must lie inside one of them (symlinks resolved)."""
    roots = cfg.paths.get("data_roots")
    if not roots:
        return
    files = {"dataset.path": cfg.dataset.get("path"), "dataset.eval_path": cfg.dataset.get("eval_path")}
    if cfg.diverse.get("queries") not in (None, "builtin", "self"):  # a file, not a built-in set
        files["diverse.queries"] = cfg.diverse.queries
    for option, path in files.items():
        if path and not OmegaConf.is_missing(cfg, option):
            check_inside_roots(path, list(roots), option)


def validate_steps(cfg: DictConfig, steps_fixed: bool = True) -> None:
    """Once the protocol has set ``trainer.max_steps``: warmup, validation and checkpoints must fall
    inside the run's steps, and (steps fixed) both DMT stages get steps, as does what a baseline with its
    own training checks (:class:`delia.baselines.OwnTraining`)."""
    _positive(cfg, "trainer.max_steps")
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
    if not steps_fixed:
        return
    if cfg.schedule.name == "two_stage" and round(steps * float(cfg.schedule.stage1_fraction)) in (0, steps):
        raise DeliaError(
            f"schedule.stage1_fraction={cfg.schedule.stage1_fraction} leaves one stage without steps at "
            f"trainer.max_steps={steps}; pick a fraction strictly between the two"
        )
    own = own_training(cfg)
    if own is not None:
        own.check_steps(cfg, steps)


def refuse_finished_run(run_dir: Path, overwrite: bool, resume: bool | str = False) -> dict[str, Any] | None:
    """A run dir that already holds a finished run is not overwritten unless ``overwrite=true``.

    With ``resume=auto`` the finished run's metrics are returned instead, so that a relaunched sweep
    skips the jobs that finished and continues the others (a metrics.json that does not parse, or holds
    no ``metrics``, is not a finished run).
    """
    metrics = run_dir / "metrics.json"
    if overwrite or not metrics.is_file():
        return None
    try:
        finished = json.loads(metrics.read_text())["metrics"]
    except (ValueError, KeyError, TypeError):
        return None
    if str(resume) == "auto":
        return finished
    raise DeliaError(
        f"{run_dir} already holds a finished run (metrics.json); pick another hydra.run.dir, "
        f"pass overwrite=true, or resume=auto to skip it"
    )
