"""The protocol check: a fit starts only on the plan its step count was computed for.

Registered by :func:`delia.callbacks.build_callbacks` for every run the protocol planned (whatever
``callbacks=`` says). When the data module is set up, before the first step and before any checkpoint:

- the trainer's real world size (``trainer.world_size``) must be the one the protocol assumed (the global
  batch, and so the exposure protocol's steps, count it);
- under the exposure protocol, the encoded downstream and diverse examples must be the ones the steps
  were computed from (``data.on_overlength=skip`` drops over-long examples, an empty reply drops a
  diverse sample: the plan would then wrap into a second pass).

A mismatch is one :class:`~delia.infra.errors.DeliaError` line naming what differs and the fix
(:func:`delia.protocol.check_world_size`, :func:`delia.protocol.check_examples`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L

from delia.data.mixing import DIVERSE, TASK
from delia.protocol import check_examples, check_world_size

SOURCES = {"downstream": TASK, "diverse": DIVERSE}


class ProtocolCheck(L.Callback):
    """Refuse a fit whose trainer or encoded data differ from what ``protocol.assumed`` says."""

    def __init__(self, assumed: Mapping[str, Any], trainer_cfg: Mapping[str, Any]) -> None:
        self.assumed = dict(assumed)
        self.trainer_cfg = dict(trainer_cfg)  # the options the protocol read: accelerator, devices, num_nodes

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage != "fit":
            return
        steps = int(trainer.max_steps)
        check_world_size(self.assumed, trainer.world_size, steps, self.trainer_cfg)
        data = trainer.datamodule
        if data is None or getattr(data, "task_epochs", None) is None:  # the compute protocol: steps fixed
            return
        handed = {name: len(data.records[source]) for name, source in SOURCES.items()}
        encoded = {name: len(data.examples[source]) for name, source in SOURCES.items()}
        limits = {"max_length": data.max_length, "on_overlength": data.on_overlength}
        check_examples(self.assumed, handed, encoded, steps, limits)
