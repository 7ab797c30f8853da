"""How long a run trains (conf/protocol/): the paper's exposure protocol, or a fixed step count.

*exposure* (default): every method sees each downstream example ``protocol.task_epochs`` times; the
step count follows from the data (the schedule's :meth:`exposure_length` over the global batch).
*compute*: ``trainer.max_steps`` optimizer steps for every method. Setting ``trainer.max_steps`` under
the exposure protocol fixes the steps too: the run is then compute-matched, and says so.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf, open_dict
from pydantic import PositiveInt

from delia.data.mixing import diverse_count, diverse_ratio, steps_for
from delia.infra.errors import DeliaError
from delia.infra.schema import Closed
from delia.schedule import build_schedule

DEFAULT_CHECKPOINT_EVERY = 16


@dataclass(frozen=True)
class RunLength:
    """The protocol that ran and what it means for this run."""

    protocol: str  # "exposure" (steps from the data) or "compute" (steps fixed)
    steps: int
    task_epochs: int | None  # passes over the task under the exposure protocol; None when steps are fixed
    global_batch: int  # examples per optimizer step over all ranks

    def as_metrics(self) -> dict[str, Any]:
        named = {"name" if k == "protocol" else k: v for k, v in asdict(self).items()}
        return {f"protocol/{k}": v for k, v in named.items() if v is not None}


class ProtocolConfig(Closed):
    """What conf/protocol accepts."""

    name: Literal["exposure", "compute"]
    task_epochs: PositiveInt = 1


def world_size(cfg: DictConfig) -> int:
    """The number of training processes: the launcher's (torchrun, srun), else the trainer's devices."""
    if os.environ.get("WORLD_SIZE"):
        return int(os.environ["WORLD_SIZE"])
    devices, nodes = cfg.trainer.get("devices", 1), int(cfg.trainer.get("num_nodes") or 1)
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    if OmegaConf.is_list(devices):
        return len(devices) * nodes
    if cfg.trainer.get("accelerator") in ("gpu", "cuda"):  # devices "auto" or -1: every visible GPU
        import torch

        return max(torch.cuda.device_count(), 1) * nodes
    return nodes


def run_length(cfg: DictConfig, n_task: int) -> RunLength:
    """The run's length for ``n_task`` downstream examples (and the diverse ones the ratio adds)."""
    global_batch = int(cfg.data.batch_size) * int(cfg.trainer.accumulate_grad_batches) * world_size(cfg)
    fixed = cfg.trainer.get("max_steps")
    if cfg.protocol.name == "compute" and fixed is None:
        raise DeliaError("protocol=compute needs trainer.max_steps=<steps>; or use protocol=exposure")
    if fixed is not None:
        return RunLength("compute", int(fixed), None, global_batch)
    epochs = int(cfg.protocol.task_epochs)
    n_diverse = diverse_count(n_task, diverse_ratio(cfg.diverse))
    examples = build_schedule(cfg.schedule).exposure_length(n_task, n_diverse, epochs)
    return RunLength("exposure", steps_for(examples, global_batch), epochs, global_batch)


def apply(cfg: DictConfig, length: RunLength) -> None:
    """Write the step count into the config (the trainer, LR schedules and checkpoints read it there)."""
    with open_dict(cfg):
        cfg.trainer.max_steps = length.steps
        if cfg.trainer.get("val_check_interval") is None:  # null: validate once, at the end of the run
            cfg.trainer.val_check_interval = length.steps * int(cfg.trainer.accumulate_grad_batches)
        if cfg.get("checkpoint_every_n_steps") is None:
            cfg.checkpoint_every_n_steps = min(DEFAULT_CHECKPOINT_EVERY, length.steps)
