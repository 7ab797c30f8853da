"""Loggers that survive a kill: the CSV log is flushed every step and kept across a resume."""

from __future__ import annotations

import csv
import os
from typing import Any

from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.loggers.csv_logs import ExperimentWriter


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
        tmp = f"{self.metrics_file_path}.tmp-{os.getpid()}"
        with open(tmp, "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=self.metrics_keys)
            writer.writeheader()
            writer.writerows(kept)
        os.replace(tmp, self.metrics_file_path)


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
