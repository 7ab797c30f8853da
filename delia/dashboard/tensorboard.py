"""``logger=tensorboard``: one log dir per job, named by method and seed, with hparams for the HParams view.

A job logs to ``<run dir>/tensorboard/<method>-seed<seed>/``, so TensorBoard opened on a sweep dir lists
``0/tensorboard/delia-seed1``, ``1/tensorboard/common_it-seed1``, ... (filter them with a regex such as
``delia-``). When the run ends, its labels (method, baseline, ablation, dataset, model, seed) and a few
swept settings are written as hparams together with the names of every metric it logged, so the HParams
view compares the methods of a sweep on their final metrics.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from delia.dashboard import flatten, run_name

# settings a sweep usually varies, shown as HParams columns beside the labels
SWEPT = (
    "optimizer.lr",
    "diverse.ratio",
    "trainer.max_steps",
    "data.batch_size",
    "peft.r",
    "schedule.name",
    "token_init.strategy",
    "dataset.train_size",
)


def hparam_value(value: Any) -> Any:
    """A number stays a number (a sortable HParams column); anything else becomes text."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return str(value)
    return value


class DeliaTensorBoardLogger(TensorBoardLogger):
    """TensorBoard with a log dir per job (``<save_dir>/<name>/<method>-seed<seed>``) and hparams per run."""

    def __init__(
        self,
        save_dir: str,
        name: str = "tensorboard",
        labels: dict[str, str] | None = None,
        experiment: str | None = None,
    ) -> None:
        self.labels = dict(labels or {})
        super().__init__(save_dir, name=name, version=run_name(self.labels), default_hp_metric=False)
        self._hparams: dict[str, Any] = dict(self.labels)
        self._metric_names: set[str] = set()

    @rank_zero_only
    def log_hyperparams(self, params: Any, metrics: Any = None, step: int | None = None) -> None:
        """Keep the labels and the swept settings for the HParams view; the whole config goes to hparams.yaml."""
        flat = flatten(params) if isinstance(params, Mapping) else {}
        self._hparams.update({key: hparam_value(flat[key]) for key in SWEPT if key in flat})
        super().log_hyperparams(params, metrics, step)

    @rank_zero_only
    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._metric_names.update(str(key) for key in metrics)
        super().log_metrics(metrics, step)

    @rank_zero_only
    def close_run(self, run_dir: Path) -> None:
        """Write the run's hparams with every metric it logged, for the HParams view."""
        from torch.utils.tensorboard.summary import hparams

        if not self._metric_names:
            return
        names = {name: 0.0 for name in sorted(self._metric_names)}  # values come from the scalars
        writer = self.experiment._get_file_writer()
        for summary in hparams(self._hparams, names):
            writer.add_summary(summary)
        self.finalize("success")  # flush and close the event file
