"""The paper's exposure protocol: the data decides the run's length, and every method sees each
downstream example the same number of times; the compute protocol stays available."""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from delia.data.mixing import DIVERSE, TASK, steps_for
from delia.infra.errors import DeliaError
from delia.protocol import run_length
from delia.schedule import Interleave, TwoStage
from tests.conftest import compose_train


def _cfg(tmp_path: Path, *overrides: str):
    return compose_train(["model=tiny_random", *overrides], run_dir=tmp_path)


def test_exposure_steps_follow_from_the_data(tmp_path: Path) -> None:
    # 64 downstream examples, ratio 1, batch 8, one pass -> (64 + 64) / 8 = 16 steps
    length = run_length(_cfg(tmp_path), 64)
    assert (length.protocol, length.steps, length.task_epochs) == ("exposure", 16, 1)
    # the release: 100 examples, ratio 260, batch 16 x accumulation 4 -> 100 x 261 / 64 = 408 steps
    paper = run_length(_cfg(tmp_path, "experiment=paper_sep_smollm2"), 100)
    assert paper.steps == 408
    # a method without diverse data sees the task as often, in fewer steps
    common = run_length(_cfg(tmp_path, "baseline=common_it"), 64)
    assert common.steps == 8
    assert run_length(_cfg(tmp_path, "protocol.task_epochs=3", "diverse.ratio=2"), 10).steps == steps_for(
        90, 8
    )


def test_the_compute_protocol_and_an_explicit_max_steps_fix_the_steps(tmp_path: Path) -> None:
    assert run_length(_cfg(tmp_path, "protocol=compute"), 64).steps == 32
    fixed = run_length(_cfg(tmp_path, "trainer.max_steps=5"), 64)
    assert (fixed.protocol, fixed.steps, fixed.task_epochs) == ("compute", 5, None)
    with pytest.raises(DeliaError, match="protocol=compute needs trainer.max_steps"):
        run_length(_cfg(tmp_path, "protocol=compute", "trainer.max_steps=null"), 64)


@pytest.mark.parametrize(("n_task", "ratio", "epochs", "batch"), [(10, 1, 1, 4), (7, 3, 2, 8), (12, 0, 3, 5)])
def test_each_pass_holds_every_task_example_once_and_ratio_times_as_many_diverse(
    n_task: int, ratio: int, epochs: int, batch: int
) -> None:
    n_diverse = n_task * ratio
    schedule = Interleave()
    length = schedule.exposure_length(n_task, n_diverse, epochs)
    total = steps_for(length, batch) * batch
    plan = schedule.exposure_plan(n_task, n_diverse, epochs, total, random.Random(0))
    body, padding = plan[:length], plan[length:]
    assert len(padding) < batch  # only the last step is filled up
    counts = Counter(body)
    assert set(counts.values()) == {epochs}
    assert sum(1 for source, _ in body if source == DIVERSE) == epochs * n_diverse
    assert sum(1 for source, _ in body if source == TASK) == epochs * n_task


def test_dmt_stages_are_sized_by_data() -> None:
    schedule = TwoStage(task_fraction_k=0.25)
    n_task, n_diverse, epochs = 8, 16, 2
    length = schedule.exposure_length(n_task, n_diverse, epochs)
    assert length == epochs * n_task + n_diverse + 2
    plan = schedule.exposure_plan(n_task, n_diverse, epochs, length, random.Random(0))
    stage1, stage2 = plan[: epochs * n_task], plan[epochs * n_task :]
    assert Counter(stage1) == Counter({(TASK, i): epochs for i in range(n_task)})
    assert sum(1 for s, _ in stage2 if s == DIVERSE) == n_diverse
    assert sum(1 for s, _ in stage2 if s == TASK) == 2
