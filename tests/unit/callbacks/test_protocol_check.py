"""The protocol check at fit start: a trainer, or an encoded data set, other than the one the protocol
planned the steps for is refused in one line; the planned ones pass."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from delia import protocol
from delia.callbacks import build_callbacks
from delia.callbacks.protocol_check import ProtocolCheck
from delia.data.datamodule import DeliaDataModule
from delia.infra.errors import DeliaError
from delia.schedule import Interleave
from tests.conftest import TINY, compose_train

EXPOSURE = [
    *TINY,
    "trainer.max_steps=null",
    "trainer.val_check_interval=null",
    "checkpoint_every_n_steps=null",
]


def planned_check(
    overrides: list[str], n_task: int, tmp_path: Path
) -> tuple[ProtocolCheck, protocol.RunLength]:
    """The check the recipe's callbacks hold once the protocol has planned ``n_task`` examples."""
    cfg = compose_train(overrides, run_dir=tmp_path)
    length = protocol.run_length(cfg, n_task)
    protocol.apply(cfg, length)
    [check] = [c for c in build_callbacks(cfg, tmp_path / "checkpoints") if isinstance(c, ProtocolCheck)]
    return check, length


def trainer(world_size: int, steps: int, datamodule: Any = None) -> Any:
    """What the check reads of a Lightning trainer."""
    return SimpleNamespace(world_size=world_size, max_steps=steps, datamodule=datamodule)


def chat(prompt: str) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": "yes"}]}


def set_up(tokenizer: Any, task: list, diverse: list, steps: int, max_length: int = 512) -> DeliaDataModule:
    """A data module of one pass (exposure protocol) that skips over-long examples, set up for fit."""
    data = DeliaDataModule(
        tokenizer, task, diverse, [], Interleave(), steps, 8, 1, max_length, "skip", task_epochs=1
    )
    data.setup("fit")
    return data


def test_a_world_size_the_protocol_did_not_plan_for_is_one_line(tmp_path: Path) -> None:
    check, length = planned_check(TINY, 8, tmp_path)
    with pytest.raises(
        DeliaError,
        match=r"^the trainer runs 4 training processes but the protocol planned trainer.max_steps=2 for 1 "
        r"\(trainer.accelerator=auto, trainer.devices=1, trainer.num_nodes=1\): set trainer.devices=4 ",
    ) as err:
        check.setup(trainer(4, length.steps), None, "fit")
    assert "\n" not in str(err.value)
    check.setup(trainer(1, length.steps), None, "fit")  # the planned world size passes


def test_devices_auto_plans_for_every_gpu_lightning_trains_on(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    cfg = compose_train([*TINY, "trainer.devices=auto"], run_dir=tmp_path)  # accelerator=auto
    assert protocol.world_size(cfg) == 4
    assert protocol.world_size(compose_train([*TINY, "trainer.devices=auto", "trainer.accelerator=cpu"])) == 1


@pytest.mark.parametrize(
    ("max_length", "diverse", "message"),
    [
        (
            48,
            4,
            r"^downstream data: 3 examples to train on, but the exposure protocol planned trainer.max_steps=1 "
            r"for 4 \(1 longer than data.max_length=48 dropped by data.on_overlength=skip\): set "
            r"data.on_overlength=truncate or raise data.max_length, or fix the steps with trainer.max_steps=<n>$",
        ),
        (
            512,
            3,
            r"^diverse data: 3 examples to train on, but the exposure protocol planned trainer.max_steps=1 "
            r"for 4 \(1 samples had an empty reply\): sample again with another diverse.seed",
        ),
    ],
    ids=["an over-long downstream example skipped", "an empty diverse reply"],
)
def test_examples_the_plan_counted_but_encoding_lost_are_one_line(
    tiny_model, tmp_path: Path, max_length: int, diverse: int, message: str
) -> None:
    _, tokenizer = tiny_model
    task = [chat(f"Question {i}?") for i in range(3)] + [chat("long " * 60)]
    check, length = planned_check([*EXPOSURE, "diverse.ratio=1", "data.batch_size=8"], len(task), tmp_path)
    replies = [chat(f"Diverse {i}?") for i in range(4)]
    data = set_up(tokenizer, task, replies[:diverse], length.steps, max_length)
    with pytest.raises(DeliaError, match=message):
        check.setup(trainer(1, length.steps, data), None, "fit")
    whole = set_up(tokenizer, task, replies, length.steps)
    check.setup(trainer(1, length.steps, whole), None, "fit")  # what the plan counted passes


def test_a_portion_is_checked_against_what_it_was_handed(tiny_model, tmp_path: Path) -> None:
    """disperse_merge trains each portion on part of the task: its steps came from that part."""
    _, tokenizer = tiny_model
    check, _ = planned_check([*EXPOSURE, "baseline=disperse_merge"], 8, tmp_path)
    part = [chat(f"Question {i}?") for i in range(4)]
    check.setup(trainer(1, 1, set_up(tokenizer, part, [], 1)), None, "fit")
    short = set_up(tokenizer, [*part, chat("long " * 60)], [], 1, max_length=48)
    with pytest.raises(DeliaError, match=r"^downstream data: 4 examples to train on, .* for 5 \(1 longer"):
        check.setup(trainer(1, 1, short), None, "fit")
