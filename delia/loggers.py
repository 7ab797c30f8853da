"""The loggers (conf/logger/): built from the config, grouped per sweep, given the final metrics, finished.

The CSV log survives a kill: it is flushed every step and kept across a resume (Lightning's own
CSVLogger deletes ``metrics.csv`` when it starts). wandb runs offline without an API key.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter
from omegaconf import DictConfig

from delia.dashboard import logger_context
from delia.infra.files import atomic_path
from delia.infra.launch import hydra_mode
from delia.infra.security import redacted_config


class _KeepingWriter(ExperimentWriter):
    """Lightning's writer deletes an existing metrics.csv; this one keeps the rows a resumed run does not redo."""

    def __init__(self, log_dir: str) -> None:
        self._merged = False
        self.drop_relogged_rows = True
        super().__init__(log_dir)

    def _check_log_dir_exists(self) -> None:
        """Keep what is there (the base class deletes metrics.csv)."""

    def save(self) -> None:
        if self.metrics and not self._merged:
            self._merged = True
            first = min(int(m["step"]) for m in self.metrics)
            self._keep_rows_before(first if self.drop_relogged_rows else None)
        super().save()

    def _keep_rows_before(self, step: int | None) -> None:
        """Drop logged rows at or after ``step`` (a resumed run logs them again; None keeps all);
        adopt the file's header so later rows line up with it."""
        if not os.path.isfile(self.metrics_file_path):
            return
        with open(self.metrics_file_path, newline="") as handle:
            reader = csv.DictReader(handle)
            keys, rows = list(reader.fieldnames or []), list(reader)
        kept = [row for row in rows if _step(row) is not None and (step is None or _step(row) < step)]
        self.metrics_keys = sorted(keys)
        with atomic_path(Path(self.metrics_file_path)) as tmp, tmp.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)


def _step(row: dict[str, str]) -> int | None:
    """The row's step, or None for a row torn by a kill."""
    try:
        return int(float(row.get("step") or ""))
    except ValueError:
        return None


class ResumableCSVLogger(CSVLogger):
    """A CSVLogger whose ``metrics.csv`` survives kills (flush every step) and resumes (rows are kept)."""

    def append_only(self) -> None:
        """Append without dropping earlier rows: for metrics logged after training ended (the parent of
        a ddp_spawn run has its own writer, which must not drop the rows the rank-0 child wrote)."""
        self.experiment.drop_relogged_rows = False

    @property
    def experiment(self) -> Any:
        if self._experiment is None:
            os.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _KeepingWriter(log_dir=self.log_dir)
        return self._experiment


def sweep_group() -> dict[str, str]:
    """Under a Hydra multirun, group the jobs' wandb runs by sweep."""
    from hydra.core.hydra_config import HydraConfig

    if hydra_mode() != "MULTIRUN":
        return {}
    hydra = HydraConfig.get()
    return {"group": Path(hydra.sweep.dir).as_posix().replace("/", "_"), "job_type": f"job{hydra.job.num}"}


def _context(name: str, conf: DictConfig, cfg: DictConfig) -> dict[str, Any]:
    """What a logger is given besides its config: the wandb sweep group; a dashboard logger's labels."""
    if name == "wandb":
        return sweep_group()
    if str(conf._target_).startswith("delia.dashboard."):
        return logger_context(cfg)
    return {}


def build_loggers(cfg: DictConfig) -> list[Any]:
    """The configured loggers, each given the redacted config as hyperparameters."""
    if "wandb" in cfg.logger and not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"  # no key: log offline, `wandb sync` later
    loggers = [
        instantiate(conf, **_context(name, conf, cfg))
        for name, conf in cfg.logger.items()
        if "_target_" in conf
    ]
    for logger in loggers:
        logger.log_hyperparams(redacted_config(cfg))
    return loggers


def keep_logged_rows(loggers: list[Any]) -> None:
    """From now on the CSV log appends without dropping earlier rows (steps that count from 0 again)."""
    for logger in loggers:
        if isinstance(logger, ResumableCSVLogger):
            logger.append_only()


def log_results(loggers: list[Any], results: dict[str, Any], samples: dict[str, list], step: int) -> None:
    """Final metrics to every logger; the scored generations as a wandb table."""
    numbers = {k: v for k, v in results["metrics"].items() if isinstance(v, int | float)}
    keep_logged_rows(loggers)
    for logger in loggers:
        logger.log_metrics(numbers, step)
        if type(logger).__name__ == "WandbLogger":
            rows = [
                [split, row.get("label", row.get("reference", "")), row["reply"]]
                for split, rows in samples.items()
                for row in rows
            ]
            logger.log_table(key="eval/generations", columns=["split", "label", "reply"], data=rows)


def finish_loggers(loggers: list[Any], run_dir: Path) -> None:
    """End the dashboards' runs (MLflow gets the run's files); ``wandb.finish()`` for every job (a
    multirun would merge them into one run otherwise)."""
    for logger in loggers:
        if hasattr(logger, "close_run"):
            logger.close_run(run_dir)
        if type(logger).__name__ == "WandbLogger":
            import wandb

            offline = os.environ.get("WANDB_MODE") == "offline"
            wandb.finish()
            if offline:
                print(f"wandb: logged offline; upload with: wandb sync {run_dir}/wandb/offline-run-*")
