"""How long a run trains (conf/protocol/): the paper's exposure protocol, or a fixed step count.

*exposure* (default): every method sees each downstream example ``protocol.task_epochs`` times; the
step count follows from the data (the schedule's :meth:`exposure_length` over the global batch).
*compute*: ``trainer.max_steps`` optimizer steps for every method. Setting ``trainer.max_steps`` under
the exposure protocol fixes the steps too: the run is then compute-matched, and says so.

What the step count was computed from (the training processes, the downstream and diverse examples)
goes into the config as ``protocol.assumed`` (:func:`apply`); at fit start :func:`check_world_size` and
:func:`check_examples` (called by :class:`delia.callbacks.protocol_check.ProtocolCheck`) refuse in one
line a trainer or an encoded data set that differs from it, so no run trains a plan made for another.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from omegaconf import DictConfig, OmegaConf, open_dict
from pydantic import NonNegativeInt, PositiveInt

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
    world_size: int = 1  # the training processes the global batch counts
    task_examples: int = 0  # the downstream examples the steps were computed from
    diverse_examples: int = 0  # the diverse examples the steps were computed from (ratio x task)

    def as_metrics(self) -> dict[str, Any]:
        named = {"name": self.protocol, "steps": self.steps, "task_epochs": self.task_epochs}
        named["global_batch"] = self.global_batch
        return {f"protocol/{k}": v for k, v in named.items() if v is not None}

    def assumed(self) -> dict[str, int]:
        """What :func:`apply` writes into ``protocol.assumed`` and the fit-start check compares."""
        return {
            "world_size": self.world_size,
            "task_examples": self.task_examples,
            "diverse_examples": self.diverse_examples,
        }


class Assumed(Closed):
    """What a run's step count was computed from (``protocol.assumed``, written by :func:`apply`)."""

    world_size: PositiveInt
    task_examples: NonNegativeInt
    diverse_examples: NonNegativeInt


class ProtocolConfig(Closed):
    """What conf/protocol accepts (``assumed`` is written by the recipe, not set by hand)."""

    name: Literal["exposure", "compute"]
    task_epochs: PositiveInt = 1
    assumed: Assumed | None = None


def world_size(cfg: DictConfig) -> int:
    """The number of training processes: the launcher's (torchrun, srun), else the trainer's devices.

    ``devices`` auto (or -1) means every visible GPU where the accelerator is a GPU, or ``auto`` on a
    machine with one (Lightning picks CUDA first), and one process otherwise.
    """
    if os.environ.get("WORLD_SIZE"):
        return int(os.environ["WORLD_SIZE"])
    devices, nodes = _devices(cfg.trainer.get("devices", 1)), int(cfg.trainer.get("num_nodes") or 1)
    if isinstance(devices, int) and devices > 0:
        return devices * nodes
    if isinstance(devices, list):
        return len(devices) * nodes
    if cfg.trainer.get("accelerator") in ("gpu", "cuda", "auto"):  # devices "auto" or -1: every visible GPU
        import torch

        return max(torch.cuda.device_count(), 1) * nodes
    return nodes


def _devices(devices: Any) -> Any:
    """``trainer.devices`` as Lightning reads it: a count, a list of device ids, or ``auto``/-1."""
    if OmegaConf.is_list(devices):
        return list(devices)
    if isinstance(devices, str) and "," in devices:  # "0,2": those device ids
        return [part for part in devices.split(",") if part.strip()]
    if isinstance(devices, str) and devices.strip().lstrip("-").isdigit():
        return int(devices)
    return devices


def run_length(cfg: DictConfig, n_task: int) -> RunLength:
    """The run's length for ``n_task`` downstream examples (and the diverse ones the ratio adds)."""
    global_batch = int(cfg.data.batch_size) * int(cfg.trainer.accumulate_grad_batches) * world_size(cfg)
    fixed = cfg.trainer.get("max_steps")
    if cfg.protocol.name == "compute" and fixed is None:
        raise DeliaError("protocol=compute needs trainer.max_steps=<steps>; or use protocol=exposure")
    n_diverse = diverse_count(n_task, diverse_ratio(cfg.diverse))
    counts = {"world_size": world_size(cfg), "task_examples": n_task, "diverse_examples": n_diverse}
    if fixed is not None:
        return RunLength("compute", int(fixed), None, global_batch, **counts)
    epochs = int(cfg.protocol.task_epochs)
    examples = build_schedule(cfg.schedule).exposure_length(n_task, n_diverse, epochs)
    return RunLength("exposure", steps_for(examples, global_batch), epochs, global_batch, **counts)


def apply(cfg: DictConfig, length: RunLength) -> None:
    """Write the step count into the config (the trainer, LR schedules and checkpoints read it there),
    and what it was computed from into ``protocol.assumed`` (the fit-start check reads it there)."""
    with open_dict(cfg):
        cfg.trainer.max_steps = length.steps
        cfg.protocol.assumed = length.assumed()
        if cfg.trainer.get("val_check_interval") is None:  # null: validate once, at the end of the run
            cfg.trainer.val_check_interval = length.steps * int(cfg.trainer.accumulate_grad_batches)
        if cfg.get("checkpoint_every_n_steps") is None:
            cfg.checkpoint_every_n_steps = min(DEFAULT_CHECKPOINT_EVERY, length.steps)


def check_world_size(
    assumed: Mapping[str, Any], real: int, steps: int, trainer_cfg: Mapping[str, Any]
) -> None:
    """The trainer runs as many training processes as the protocol planned its ``steps`` for
    (``trainer_cfg``: the config's ``trainer`` options the protocol read)."""
    planned = int(assumed["world_size"])
    if real == planned:
        return
    nodes = int(trainer_cfg.get("num_nodes") or 1)
    read = (
        f"WORLD_SIZE={os.environ['WORLD_SIZE']}"
        if os.environ.get("WORLD_SIZE")
        else f"trainer.accelerator={trainer_cfg.get('accelerator')}, trainer.devices={trainer_cfg.get('devices')}, "
        f"trainer.num_nodes={nodes}"
    )
    per_node = real // nodes if real % nodes == 0 else real
    raise DeliaError(
        f"the trainer runs {real} training processes but the protocol planned trainer.max_steps={steps} for "
        f"{planned} ({read}): set trainer.devices={per_node} so that the protocol plans for the processes "
        f"that run"
    )


def plan_counts(assumed: Mapping[str, Any], handed: Mapping[str, int]) -> dict[str, int]:
    """The examples a fit's steps were computed from: the protocol's, for the fit of the whole task; a fit
    of part of it (a disperse_merge portion) was planned from the records it was handed."""
    if handed["downstream"] != int(assumed["task_examples"]):
        return dict(handed)
    return {"downstream": int(assumed["task_examples"]), "diverse": int(assumed["diverse_examples"])}


def check_examples(
    assumed: Mapping[str, Any],
    handed: Mapping[str, int],
    encoded: Mapping[str, int],
    steps: int,
    data_cfg: Mapping[str, Any],
) -> None:
    """Under the exposure protocol, the encoded examples of each source (``downstream``, ``diverse``) are
    the ones the fit's ``steps`` were computed from: none dropped by ``data.on_overlength=skip``, no
    diverse sample missing (an empty reply is not kept). ``handed``: the records each source gave the
    data module; ``encoded``: the examples it made of them."""
    planned = plan_counts(assumed, handed)
    for source in ("downstream", "diverse"):
        if encoded[source] != planned[source]:
            why, fix = _why_fewer(source, planned[source], handed[source], encoded[source], data_cfg)
            raise DeliaError(
                f"{source} data: {encoded[source]} examples to train on, but the exposure protocol planned "
                f"trainer.max_steps={steps} for {planned[source]} ({why}): {fix}, or fix the steps with "
                f"trainer.max_steps=<n>"
            )


def _why_fewer(
    source: str, planned: int, handed: int, encoded: int, data_cfg: Mapping[str, Any]
) -> tuple[str, str]:
    if encoded < handed:
        return (
            f"{handed - encoded} longer than data.max_length={data_cfg.get('max_length')} dropped by "
            f"data.on_overlength={data_cfg.get('on_overlength')}",
            "set data.on_overlength=truncate or raise data.max_length",
        )
    if source == "diverse" and handed < planned:
        return f"{planned - handed} samples had an empty reply", "sample again with another diverse.seed"
    return f"the data module was handed {handed}", "report this as a bug"
