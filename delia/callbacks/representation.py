"""Track the new token's representation distances over training (``callbacks.representation``)."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L

from delia.eval.representation import (
    DEFAULT_CONTEXT,
    representation_distances,
    representation_report,
    split_context,
)

log = logging.getLogger(__name__)


class RepresentationTracker(L.Callback):
    """Log the representation distances at the start of training and every ``every_n_steps`` steps.

    The distances are computed on ``pl_module.model`` with the tokenizer of ``trainer.datamodule``
    (or the ``tokenizer`` given here), and written to every logger with
    ``log_metrics(..., step=trainer.global_step)`` on global rank zero. The loggers are called
    directly because ``self.log`` is not allowed per step in ``on_train_start`` and, in
    ``on_train_batch_end``, only reaches the loggers on the trainer's ``log_every_n_steps`` grid.
    ``history`` holds ``(step, distances)`` for every measurement; it is saved in checkpoints and
    restored on resume.
    """

    def __init__(
        self,
        token: str,
        keywords: list[str],
        layers: list[int] | None = None,
        every_n_steps: int = 10,
        context: str = DEFAULT_CONTEXT,
        tokenizer: Any | None = None,
    ) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps={every_n_steps}: must be at least 1")
        split_context(context)  # fail at construction, not in the middle of training
        self.token = token
        self.keywords = list(keywords)
        self.layers = None if layers is None else list(layers)
        self.every_n_steps = every_n_steps
        self.context = context
        self.tokenizer = tokenizer
        self.history: list[tuple[int, dict[str, float]]] = []
        self._last_step: int | None = None
        # the task's prior description: set, the tracker logs every measure of representation_report
        self.description: str | None = None

    def _tokenizer(self, trainer: L.Trainer) -> Any:
        """The tokenizer given to the callback, else ``trainer.datamodule.tokenizer``."""
        if self.tokenizer is not None:
            return self.tokenizer
        tokenizer = getattr(getattr(trainer, "datamodule", None), "tokenizer", None)
        if tokenizer is None:
            raise ValueError(
                "RepresentationTracker needs a tokenizer: pass tokenizer= or fit with a datamodule "
                "that has a .tokenizer attribute"
            )
        return tokenizer

    def distances(self, pl_module: L.LightningModule, tokenizer: Any) -> dict[str, float]:
        """The distances of ``pl_module.model`` now."""
        if self.description is not None:
            return representation_report(
                pl_module.model, tokenizer, self.token, self.keywords, self.layers, self.description
            )
        return representation_distances(
            pl_module.model, tokenizer, self.token, self.keywords, self.layers, self.context
        )

    def final(self, pl_module: L.LightningModule, tokenizer: Any) -> dict[str, float]:
        """The end-of-run distances (not logged, not added to ``history``)."""
        return self.distances(pl_module, tokenizer)

    def _measure(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Compute, record and log the distances at the current global step."""
        step = trainer.global_step
        metrics = self.distances(pl_module, self._tokenizer(trainer))
        self.history.append((step, metrics))
        self._last_step = step
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        log.debug("representation distances at step %d: %s", step, metrics)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._last_step:  # resumed right after a measured step: no repeat
            self._measure(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every_n_steps == 0 and step != self._last_step:
            self._measure(trainer, pl_module)

    @property
    def state_key(self) -> str:
        """Distinct per token, keywords and layers, so several trackers can share a checkpoint."""
        return self._generate_state_key(token=self.token, keywords=self.keywords, layers=self.layers)

    def state_dict(self) -> dict[str, Any]:
        """``history`` goes into checkpoints, so a resumed run keeps the whole curve."""
        return {"history": [[step, dict(metrics)] for step, metrics in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(step), dict(metrics)) for step, metrics in state_dict.get("history", [])]
        self._last_step = self.history[-1][0] if self.history else None
