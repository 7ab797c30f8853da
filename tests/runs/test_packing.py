"""Packing, with either attention for packed rows: the same losses as an unpacked run."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from tests.conftest import TINY, compose_train


@pytest.mark.parametrize("steps", [3])
def test_a_packed_run_trains_like_an_unpacked_one(tmp_path: Path, steps: int) -> None:
    from delia.recipe import train

    runs = {}
    for packing, attention in ((False, True), (True, False), (True, True)):
        overrides = [
            *TINY,
            "logger=csv",
            f"data.packing={packing}",
            f"data.packed_attention={attention}",
            "peft.lora_dropout=0",
            f"trainer.max_steps={steps}",
        ]
        run_dir = tmp_path / f"packing_{packing}_{attention}"
        runs[packing, attention] = (
            train(
                compose_train(
                    [*overrides, "trainer.val_check_interval=3", "checkpoint_every_n_steps=3"],
                    run_dir=run_dir,
                )
            ),
            run_dir,
        )
    plain, plain_dir = runs[False, True]
    assert len(_losses(plain_dir)) == steps
    for packed, packed_dir in (runs[True, False], runs[True, True]):  # sdpa's mask, one attention per example
        assert _losses(packed_dir) == pytest.approx(_losses(plain_dir), rel=1e-4)
        assert packed["eval/loss"] == pytest.approx(plain["eval/loss"], rel=1e-4)
        assert packed["train/seen_task_examples"] == plain["train/seen_task_examples"]


def _losses(run_dir: Path) -> list[float]:
    with open(run_dir / "csv" / "metrics.csv", newline="") as handle:
        return [float(row["train/loss"]) for row in csv.DictReader(handle) if row.get("train/loss")]
