"""Callbacks of the recipe: checkpoint-and-stop on preemption signals."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L

log = logging.getLogger(__name__)


class PreemptionCheckpoint(L.Callback):
    """On SIGTERM or SIGUSR1 (SLURM preemption), finish the current batch, save ``last.ckpt`` and stop.

    The run then exits cleanly; started again on the same run dir with ``resume=auto`` (or ``true``)
    it continues from that checkpoint, as a requeued SLURM job does.
    """

    def __init__(self, dirpath: str, signals: tuple[str, ...] = ("SIGTERM", "SIGUSR1")) -> None:
        self.dirpath = Path(dirpath)
        self.signals = signals
        self.received: int | None = None
        self.saved_at_step: int | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        self.received = signum

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # installed last, so these handlers (not Lightning's) decide what a signal does during training
        for name in self.signals:
            sig = getattr(signal, name)
            self._previous[sig] = signal.signal(sig, self._handle)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self.received is None or self.saved_at_step is not None:
            return
        path = self.dirpath / "last.ckpt"
        trainer.save_checkpoint(path)
        self.saved_at_step = trainer.global_step
        trainer.should_stop = True
        log.warning(
            "%s received: saved %s at step %d and stopping",
            signal.Signals(self.received).name,
            path,
            trainer.global_step,
        )

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()
