"""Reading a sweep: one :class:`Job` per job dir, its status, overrides, config fields and metrics."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from delia.infra.errors import DeliaError
from delia.infra.files import is_locked

if TYPE_CHECKING:
    pass

Status = Literal["done", "failed", "running"]
Value = str | int | float | bool | None

REPLICATE_KEY = "seed"
# overrides that change how a job runs, not what it measures: never a factor of the sweep (a part rerun
# with resume=auto, or one that saves a checkpoint every n steps, belongs with the same settings run without)
OPERATIONAL_KEYS = ("resume", "checkpoint_every_n_steps")
# resolved config fields kept per job (dotted paths into config.yaml)
CONFIG_FIELDS = (
    "baseline.name",
    "ablation.name",
    "dataset.name",
    "dataset.train_size",
    "model.name",
    "seed",
    "diverse.name",
    "diverse.ratio",
    "schedule.name",
    "token_init.strategy",
    "peft.name",
    "optimizer.lr",
    "trainer.max_steps",
    "protocol.name",
    "protocol.task_epochs",
)
# the metrics of the paper's figure, in its order; eval/loss stands in when generation was off.
# eval/format_acc and eval/label_acc are read from result folders written before the splits were named
# by their wordings (that split mixed wordings a run trained on with others): shown under their own name.
KEY_METRICS = (
    "seen_wordings/format_acc",
    "seen_wordings/label_acc",
    "unseen_wordings/format_acc",
    "unseen_wordings/label_acc",
    "negative/format_rate",
    "eval/format_acc",
    "eval/label_acc",
)
# older names of the same measurement (the held-out wordings split was called heldout)
RENAMED = {"heldout/": "unseen_wordings/"}
# plotted against the swept size or ratio when the jobs have them: the scale-free representation distance
# (absolute and change from step 0) and the buffering measures of callbacks=buffering
CURVE_METRICS = (
    "repr/rel_l2_layer1",
    "repr/rel_l2_layer1_change",
    "repr/desc_rel_l2_layer1",
    "buffer/diverse_cancellation",
    "buffer/task_kept",
)
FALLBACK_METRICS = ("eval/loss",)
LOSS_COLUMNS = ("train/loss_task", "train/loss_diverse")
BUFFER_COLUMNS = (
    "buffer/diverse_cancellation",
    "buffer/task_cancellation",
    "buffer/task_diverse_cos",
    "buffer/task_kept",
)
PLOT_FILES = {
    "metric_vs_train_size": "metric_vs_train_size.png",
    "metric_vs_ratio": "metric_vs_ratio.png",
    "ablation_heatmap": "ablation_heatmap.png",
    "loss_curves": "loss_curves.png",
    "buffering_curves": "buffering_curves.png",
}
SWEEP_HINT = "pass a multirun dir such as outputs/multirun/<date>/<time>"


class MissingData(Exception):
    """A plot has nothing to draw; the message says what is missing (a note, not an error)."""


@dataclass
class Job:
    """One job dir of the sweep."""

    path: Path
    num: int
    status: Status
    overrides: dict[str, Value] | None  # None: no .hydra/overrides.yaml (the job never started)
    config: dict[str, Any]  # CONFIG_FIELDS, from the resolved config.yaml
    metrics: dict[str, float]  # NaN where metrics.json has null; empty unless done
    note: str = ""  # why a job is not done, when the log says
    swept: dict[str, Value] = field(default_factory=dict)  # this job's values of the sweep's swept keys

    @property
    def baseline(self) -> str:
        """From the resolved config, else the ``baseline=`` override, else ``?``."""
        return str(self.config.get("baseline.name") or (self.overrides or {}).get("baseline") or "?")

    @property
    def ablation(self) -> str:
        """From the resolved config, else the ``ablation=`` override, else ``none``."""
        return str(self.config.get("ablation.name") or (self.overrides or {}).get("ablation") or "none")

    @property
    def method(self) -> str:
        """``delia``, ``common_it``, or ``delia + no_diverse_data`` for an ablation."""
        return self.baseline if self.ablation == "none" else f"{self.baseline} + {self.ablation}"


@dataclass
class Report:
    """Every job of a sweep, and which override keys the sweep varied."""

    sweep_dir: Path
    jobs: list[Job]
    swept_keys: list[str]
    only_metrics: list[str] | None = None  # ``--metrics``: the metrics to show, in this order

    @property
    def finished(self) -> list[Job]:
        return [job for job in self.jobs if job.status == "done"]

    @property
    def unfinished(self) -> list[Job]:
        return [job for job in self.jobs if job.status != "done"]

    @property
    def group_keys(self) -> list[str]:
        """The summary's row keys: baseline, ablation, then the other swept keys except the seed."""
        fixed = ("baseline", "ablation", REPLICATE_KEY)
        return ["baseline", "ablation", *(k for k in self.swept_keys if k not in fixed)]

    @property
    def metric_names(self) -> list[str]:
        """Every metric of a finished job, in the order the jobs report them (or ``only_metrics``)."""
        names = list(dict.fromkeys(name for job in self.finished for name in job.metrics))
        return [n for n in self.only_metrics if n in names] if self.only_metrics else names


def _numbered(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))


def _job_dirs(sweep: Path) -> list[Path]:
    """The numbered job dirs of one sweep folder, or of its parts (one level down)."""
    if not sweep.is_dir():
        raise DeliaError(f"{sweep}: no such directory; {SWEEP_HINT}")
    job_dirs = _numbered(sweep) or [
        job for part in sorted(p for p in sweep.iterdir() if p.is_dir()) for job in _numbered(part)
    ]
    if not job_dirs:
        raise DeliaError(f"{sweep}: no job directories (0/, 1/, ...) found; {SWEEP_HINT}")
    return job_dirs


def collect(sweep_dir: str | Path, *more: str | Path) -> Report:
    """Read every numbered job dir of ``sweep_dir`` (and of each folder in ``more``) into a :class:`Report`.

    A folder without job dirs of its own but with sweeps inside (the parts of an experiment that ran
    as several ``-m`` commands, e.g. ``ratio_cpu/{ratios,refs}/``) is read as one sweep of all their jobs.
    Several folders are read as one sweep too: a reference that lives beside the jobs it is compared with
    (``delia-report refs/ ratio_cpu_v2/r4 --against common_it``). The report belongs to ``sweep_dir``.
    """
    job_dirs = [job for folder in (sweep_dir, *more) for job in _job_dirs(Path(folder))]
    jobs = [read_job(path) for path in job_dirs]
    keys = swept_keys(jobs)
    for job in jobs:
        job.swept = {key: (job.overrides or {}).get(key) for key in keys}
        if REPLICATE_KEY in keys and job.config.get("seed") is not None:
            job.swept[REPLICATE_KEY] = job.config["seed"]
    return Report(Path(sweep_dir), jobs, keys)


def read_job(path: Path) -> Job:
    """One job dir: its status, overrides, resolved config fields and metrics."""
    status, metrics, note = job_status(path)
    return Job(
        path=path,
        num=int(path.name),
        status=status,
        overrides=read_overrides(path / ".hydra" / "overrides.yaml"),
        config=read_config(path),
        metrics=metrics,
        note=note,
    )


def job_status(path: Path) -> tuple[Status, dict[str, float], str]:
    """``running`` while the job's lock is held, else ``done`` with its metrics, else ``failed``."""
    if is_locked(path / ".delia.lock"):
        return "running", {}, ""
    metrics_file = path / "metrics.json"
    if not metrics_file.is_file():
        return "failed", {}, last_error(path / "train.log") or "no metrics.json"
    try:
        payload = json.loads(metrics_file.read_text())
        metrics = parse_metrics(payload.get("metrics", {}))
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError) as err:
        return "failed", {}, f"metrics.json unreadable ({err})"
    return "done", {**metrics, **rescored_metrics(path)}, ""


def rescored_metrics(path: Path) -> dict[str, float]:
    """The format measures of the job's generations scored again with today's measures
    (``rescored.json``, :mod:`delia.tools.rescore`), which replace those the run wrote."""
    rescored = path / "rescored.json"
    if not rescored.is_file():
        return {}
    try:
        return parse_metrics(json.loads(rescored.read_text()).get("metrics", {}))
    except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
        return {}


def last_error(log_file: Path) -> str:
    """The message of the last ``[ERROR]`` line of a job's ``train.log``, if any."""
    if not log_file.is_file():
        return ""
    errors = [line for line in log_file.read_text(errors="replace").splitlines() if "][ERROR] - " in line]
    return errors[-1].split("][ERROR] - ", 1)[1].strip() if errors else ""


def parse_metrics(raw: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics as floats; null becomes NaN; anything else is dropped; old names renamed."""
    out: dict[str, float] = {}
    for old_name, value in raw.items():
        name = next(
            (new + old_name[len(old) :] for old, new in RENAMED.items() if old_name.startswith(old)), old_name
        )
        if value is None:
            out[name] = math.nan
        elif isinstance(value, int | float) and not isinstance(value, bool):
            out[name] = float(value)
    return out


def read_overrides(path: Path) -> dict[str, Value] | None:
    """``.hydra/overrides.yaml`` (a list of ``key=value``) as a dict, values parsed as YAML scalars."""
    if not path.is_file():
        return None
    items = yaml.safe_load(path.read_text()) or []
    out: dict[str, Value] = {}
    for item in items:
        key, _, value = str(item).partition("=")
        out[key.lstrip("+~")] = parse_scalar(value)
    return out


def parse_scalar(text: str) -> Value:
    """``"1"`` -> 1, ``"0.5"`` -> 0.5, ``"null"`` -> None; lists, dicts and odd text stay strings."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    return value if isinstance(value, str | int | float | bool | type(None)) else text


def read_config(path: Path) -> dict[str, Any]:
    """:data:`CONFIG_FIELDS` from the resolved ``config.yaml`` (else Hydra's copy, else nothing)."""
    for candidate in (path / "config.yaml", path / ".hydra" / "config.yaml"):
        if candidate.is_file():
            try:
                cfg = yaml.safe_load(candidate.read_text()) or {}
            except yaml.YAMLError:
                continue
            return {name: dotted(cfg, name) for name in CONFIG_FIELDS}
    return {}


def dotted(cfg: Any, name: str) -> Any:
    """``cfg["a"]["b"]`` for ``"a.b"``; None where a part is missing."""
    for part in name.split("."):
        if not isinstance(cfg, dict) or part not in cfg:
            return None
        cfg = cfg[part]
    return cfg


def swept_keys(jobs: Sequence[Job]) -> list[str]:
    """Override keys whose values differ between the jobs that started, in override order.

    :data:`OPERATIONAL_KEYS` are left out.
    """
    started = [job.overrides for job in jobs if job.overrides is not None]
    keys = dict.fromkeys(key for overrides in started for key in overrides if key not in OPERATIONAL_KEYS)
    return [key for key in keys if len({repr(o.get(key)) for o in started}) > 1]
