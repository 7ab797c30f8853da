"""Progress bars with a rate and an ETA: self-sampling, training (step x of N for the whole run),
evaluation and retention.

On a terminal a bar redraws itself in place; when the output goes to a file or a CI log the bar is
drawn at most every :data:`LOG_INTERVAL_S` seconds, so the log stays readable.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import Any

import lightning as L
from lightning.pytorch.callbacks.progress import ProgressBar
from tqdm import tqdm as std_tqdm
from tqdm.auto import tqdm

LOG_INTERVAL_S = 30.0
# what the training bar shows after the counts (metrics logged with prog_bar=True), and how it calls them
SHOWN = {"train/loss": "loss", "train/loss_task": "loss_task", "val/loss": "val_loss"}


class LogBar(std_tqdm):
    """A bar in a log (not a terminal): each draw is a line of its own, so log lines never land inside a
    bar; a draw that shows nothing new (the same count and postfix) is skipped."""

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # a request to clear or override the line: nothing to undo in a log
            return False
        shown = (self.n, self.total, str(self.postfix))
        if shown != getattr(self, "_last_shown", None):
            self._last_shown = shown
            self.fp.write(f"{self}\n")
            self.fp.flush()
        return True

    def close(self) -> None:
        if not self.disable and self.leave:
            self._ema_dt = lambda: None  # the final line shows the average rate of the whole bar
            self.display()
        self.leave = False  # the final line is written: tqdm's own close must not add another
        super().close()


def progress(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: int | None = None,
    unit: str = "it",
    initial: int = 0,
    leave: bool = True,
) -> Any:
    """A tqdm bar on stderr: redrawn in place on a terminal; in a log, a line every :data:`LOG_INTERVAL_S` s
    and one at the end."""
    terminal = sys.stderr.isatty()
    return (tqdm if terminal else LogBar)(
        iterable,
        desc=desc,
        total=total,
        unit=unit,
        initial=initial,
        leave=leave,
        file=sys.stderr,
        dynamic_ncols=terminal,
        mininterval=0.1 if terminal else LOG_INTERVAL_S,
    )


class StepProgressBar(ProgressBar):
    """One bar for the whole run: optimizer step x of ``max_steps``, the losses, a rate and an ETA.

    Lightning's own bars count batches per epoch; DELIA trains by ``max_steps`` over its step plan
    (``max_epochs=-1``), which they show as "Epoch 0/-2". The validation loss joins the bar's losses.
    """

    def __init__(self, desc: str = "training") -> None:
        super().__init__()
        self.desc = desc
        self._enabled = True
        self._train: Any = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def print(self, *args: Any, **kwargs: Any) -> None:
        tqdm.write(" ".join(map(str, args)), file=sys.stderr)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._enabled:
            self._train = progress(
                desc=self.desc, total=trainer.max_steps, initial=trainer.global_step, unit="step"
            )

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        if self._train is not None:
            self._train.set_postfix(self._shown(trainer), refresh=False)
            self._train.update(trainer.global_step - self._train.n)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._train is not None and not trainer.sanity_checking:
            self._train.set_postfix(self._shown(trainer))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._train is not None:
            self._train.close()
            self._train = None

    @staticmethod
    def _shown(trainer: L.Trainer) -> dict[str, str]:
        metrics = trainer.progress_bar_metrics
        return {short: f"{float(metrics[key]):.3f}" for key, short in SHOWN.items() if key in metrics}
