"""Issue 28: on a chat file whose rows share one instruction, DELIA and its ablation without task
diversification are two different jobs (the recipe trains other user turns), or the ablation is refused.

Before the wording pools, both trained on the rows as they were: the same job under two names."""

from __future__ import annotations

from pathlib import Path

import pytest

from delia.config import validate
from delia.infra.errors import DeliaError
from tests.conftest import TINY, compose_train
from tests.unit.dataset.wordings.chat_files import INSTRUCTION, authors_chat_file

ISSUE = ["diverse.ratio=1", "data.batch_size=4", "retention.enabled=false"]


def trained_instructions(tmp_path: Path, data: Path, *overrides: str) -> list[str]:
    """The user turns of the train split the recipe trains on, with each row's fields taken out."""
    from delia.recipe import prepare_data

    cfg = compose_train(
        [*TINY, "dataset=jsonl", f"dataset.path={data}", *ISSUE, *overrides], tmp_path / "run"
    )
    validate(cfg)
    records = prepare_data(cfg).splits["train"]
    turns = [r["messages"][0]["content"] for r in records]
    assert len(turns) == cfg.dataset.train_size  # debug=fast's 8 of the 36 rows the eval fraction leaves
    return turns


def test_delia_and_no_task_diversification_train_on_different_wordings(tmp_path: Path) -> None:
    data = authors_chat_file(tmp_path / "add.jsonl")
    delia = trained_instructions(tmp_path, data, "method=delia", "wordings=rules")
    ablation = trained_instructions(tmp_path, data, "method=delia_no_task_diversification", "wordings=rules")
    assert delia != ablation
    assert all(turn.endswith(f"\n\n{INSTRUCTION}") for turn in ablation)  # one fixed wording: the rows' own
    assert sum(INSTRUCTION not in turn for turn in delia) > len(delia) // 2


def test_without_a_pool_the_ablation_is_refused_rather_than_run_as_the_same_job(tmp_path: Path) -> None:
    data = authors_chat_file(tmp_path / "add.jsonl")
    cfg = compose_train(
        [*TINY, "dataset=jsonl", f"dataset.path={data}", *ISSUE, "method=delia_no_task_diversification"]
    )
    with pytest.raises(DeliaError, match=r"^ablation=no_task_diversification .*same .*wordings=rules"):
        validate(cfg)
