"""Experiment dashboards: what names and groups a run in MLflow and TensorBoard, and where the store is.

- :mod:`delia.dashboard.mlflow_logger`: ``logger=mlflow``, a local SQLite store under ``paths.output_root``;
- :mod:`delia.dashboard.tensorboard`: ``logger=tensorboard``, a log dir per job named by method and seed,
  with the run's hparams for TensorBoard's HParams view;
- :mod:`delia.dashboard.serve`: what ``delia-dashboard [dir]`` starts (``mlflow server`` or TensorBoard);
- :mod:`delia.dashboard.report`: ``delia-report``'s PNGs attached to the sweep's MLflow runs.

A run is labelled by its method (the baseline, plus the ablation when there is one), baseline, ablation,
dataset, model and seed; it is named ``<method>-seed<seed>``. The jobs of a Hydra multirun share one
MLflow experiment named after the sweep dir; single runs go to the experiment ``runs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

SINGLE_RUNS = "runs"  # the MLflow experiment of runs that are not part of a sweep
STORE_FILE = "mlflow.db"  # the SQLite store, in paths.output_root
POINTER_FILE = "mlflow.json"  # in a run dir: which store, experiment and run it logged to


def store_uri(store_dir: str | Path) -> str:
    """``sqlite:////abs/outputs/mlflow.db``: the MLflow store of every run under ``store_dir``."""
    return f"sqlite:///{Path(store_dir).expanduser().resolve() / STORE_FILE}"


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"optimizer.lr": 0.0002, ...}``: nested options under the keys a Hydra override would use."""
    out: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def method_name(baseline: str, ablation: str) -> str:
    """The ``method=`` choice that names this baseline+ablation pair (``delia_no_diverse_data``, ``dmt``)."""
    return baseline if ablation in ("none", "", None) else f"{baseline}_{ablation}"


def run_labels(cfg: DictConfig) -> dict[str, str]:
    """The tags a dashboard filters and groups a run by."""
    baseline, ablation = str(cfg.baseline.name), str(cfg.ablation.name)
    return {
        "method": method_name(baseline, ablation),
        "baseline": baseline,
        "ablation": ablation,
        "dataset": str(cfg.dataset.name),
        "model": str(cfg.model.name),
        "seed": str(cfg.seed),
    }


def run_name(labels: dict[str, str]) -> str:
    """``<method>-seed<seed>``, e.g. ``delia-seed1`` (``run`` when the labels are unknown)."""
    if not labels:
        return "run"
    return f"{labels.get('method', 'run')}-seed{labels.get('seed', '?')}"


def sweep_dir() -> Path | None:
    """The sweep dir of the Hydra multirun this job belongs to (None for a single run)."""
    from hydra.core.hydra_config import HydraConfig

    from delia.infra.launch import hydra_mode

    if hydra_mode() != "MULTIRUN":
        return None
    return Path(HydraConfig.get().sweep.dir)


def experiment_name(output_root: str | Path, sweep: Path | None) -> str:
    """The sweep dir relative to ``output_root`` (``multirun/2026-12-02/10-00-00``), or ``runs``."""
    if sweep is None:
        return SINGLE_RUNS
    root, folder = Path(output_root).resolve(), sweep.resolve()
    return folder.relative_to(root).as_posix() if folder.is_relative_to(root) else folder.as_posix()


def logger_context(cfg: DictConfig) -> dict[str, Any]:
    """What a dashboard logger is given at build time besides its config: the labels and the sweep."""
    return {
        "labels": run_labels(cfg),
        "experiment": experiment_name(cfg.paths.output_root, sweep_dir()),
    }
