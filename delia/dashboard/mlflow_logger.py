"""``logger=mlflow``: Lightning's MLFlowLogger on a local SQLite store that every job of a sweep shares.

The store is ``<paths.output_root>/mlflow.db`` (an absolute path, so that every job of a multirun and
every ddp_spawn process reaches the same file); artifacts go to ``<output_root>/mlartifacts/<experiment>``.
Creating the store and the experiment happens under a file lock, so parallel sweep jobs do not race.
The run stays open through evaluation: :meth:`DeliaMLFlowLogger.close_run` attaches ``metrics.json``
and ``config.yaml`` and ends it. A resumed run (its dir holds ``mlflow.json`` of an unfinished run)
continues the same MLflow run.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger
from lightning.pytorch.loggers.logger import rank_zero_experiment
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from delia.dashboard import POINTER_FILE, SINGLE_RUNS, STORE_FILE, flatten, run_name, store_uri
from delia.infra.files import file_lock, write_json

RUN_FILES = ("metrics.json", "config.yaml")  # attached to the MLflow run when it ends
PARAM_CHARS = 500  # MLflow >= 1.28 keeps 500 characters of a parameter value
EXPERIMENT_TAGS = {"mlflow.experimentKind": "custom_model_development"}


def flat_params(config: Mapping[str, Any]) -> dict[str, str]:
    """``{"optimizer.lr": "0.0002", ...}``: the keys a Hydra override would use, values as text."""
    return {key: str(value)[:PARAM_CHARS] for key, value in flatten(config).items()}


@contextlib.contextmanager
def quiet_migrations() -> Iterator[None]:
    """A new SQLite store runs MLflow's schema migrations, which log a page of INFO lines: keep them out."""
    loggers = [logging.getLogger(name) for name in ("alembic", "mlflow.store.db.utils")]
    levels = [one.level for one in loggers]
    for one in loggers:
        one.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for one, level in zip(loggers, levels, strict=True):
            one.setLevel(level)


class DeliaMLFlowLogger(MLFlowLogger):
    """One MLflow run per job, in the experiment of its sweep, named and tagged by method and seed."""

    def __init__(
        self,
        store_dir: str,
        run_dir: str,
        experiment_name: str | None = None,
        labels: dict[str, str] | None = None,
        experiment: str = SINGLE_RUNS,
    ) -> None:
        name = experiment_name or experiment
        self.store_dir = Path(store_dir).expanduser().resolve()
        self.run_dir = Path(run_dir).expanduser().resolve()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with self._store_lock():
            super().__init__(
                experiment_name=name,
                run_name=run_name(labels or {}),
                tracking_uri=store_uri(self.store_dir),
                tags=dict(labels or {}) or None,
                artifact_location=str(self.store_dir / "mlartifacts" / name.replace("/", "_")),
                synchronous=True,
            )

    def _store_lock(self) -> contextlib.AbstractContextManager[None]:
        return _locked_and_quiet(self.store_dir / f"{STORE_FILE}.lock")

    @property
    @rank_zero_experiment
    def experiment(self) -> Any:
        if self._initialized:
            return self._mlflow_client
        with self._store_lock():
            self._run_id = self._run_id or self._unfinished_run()
            if self._run_id is None and self._experiment_id is None:
                self._experiment_id = self._experiment_or_new()
            client = super().experiment
        self._write_pointer()
        return client

    def _experiment_or_new(self) -> str:
        found = self._mlflow_client.get_experiment_by_name(self._experiment_name)
        if found is not None and found.lifecycle_stage != "deleted":
            return str(found.experiment_id)
        # the kind makes MLflow's UI open the experiment on its training runs, not on GenAI traces
        return str(
            self._mlflow_client.create_experiment(
                self._experiment_name, artifact_location=self._artifact_location, tags=EXPERIMENT_TAGS
            )
        )

    def _unfinished_run(self) -> str | None:
        """The run a killed job of this run dir left open in this store (a resumed run continues it)."""
        try:
            pointer = json.loads((self.run_dir / POINTER_FILE).read_text())
            run = self._mlflow_client.get_run(str(pointer["run_id"]))
        except Exception:  # no pointer, or a run this store does not have
            return None
        same_store = pointer.get("tracking_uri") == self._tracking_uri
        return run.info.run_id if same_store and run.info.status != "FINISHED" else None

    def _write_pointer(self) -> None:
        write_json(
            self.run_dir / POINTER_FILE,
            {
                "tracking_uri": self._tracking_uri,
                "experiment_name": self._experiment_name,
                "experiment_id": self._experiment_id,
                "run_id": self._run_id,
                "run_name": self._run_name,
            },
        )

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:
        """The flattened config as parameters (``optimizer.lr``); a resumed run keeps what it logged."""
        from mlflow.entities import Param

        logged = self.experiment.get_run(self.run_id).data.params
        items = [Param(k, v) for k, v in flat_params(dict(params)).items() if k not in logged]
        for start in range(0, len(items), 100):  # MLflow takes at most 100 parameters a batch
            self.experiment.log_batch(run_id=self.run_id, params=items[start : start + 100])

    @rank_zero_only
    def finalize(self, status: str = "success") -> None:
        """Lightning ends the run when fitting ends; a finished fit is ended by :meth:`close_run` instead."""
        if status != "success":
            super().finalize(status)

    @rank_zero_only
    def close_run(self, run_dir: Path) -> None:
        """Attach the run's files (metrics.json, config.yaml) and end the MLflow run: finished, or killed
        when the run stopped before its metrics (preempted; ``resume=true`` continues the same run)."""
        if not self._initialized:
            return
        for name in RUN_FILES:
            if (run_dir / name).is_file():
                self.experiment.log_artifact(self.run_id, str(run_dir / name))
        super().finalize("success" if (run_dir / "metrics.json").is_file() else "KILLED")


@contextlib.contextmanager
def _locked_and_quiet(lock: Path) -> Iterator[None]:
    with file_lock(lock), quiet_migrations():
        yield
