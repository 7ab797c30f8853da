"""A run whose encoded data is not what the protocol planned its steps for stops before its first step."""

from __future__ import annotations

from pathlib import Path

import pytest

from delia.infra.errors import DeliaError
from tests.conftest import TINY, compose_train

EXPOSURE = [
    *TINY,
    "trainer.max_steps=null",
    "trainer.val_check_interval=null",
    "checkpoint_every_n_steps=null",
]


def test_examples_skipped_as_over_long_stop_the_run_before_its_first_step(tmp_path: Path) -> None:
    from delia.recipe import train

    # 4 of the 8 downstream examples of the tiny <sep> task are longer than 170 tokens
    overrides = [*EXPOSURE, "data.on_overlength=skip", "data.max_length=170", "retention.enabled=false"]
    run_dir = tmp_path / "run"
    with pytest.raises(
        DeliaError,
        match=r"^downstream data: 4 examples to train on, but the exposure protocol planned trainer.max_steps=2 "
        r"for 8 \(4 longer than data.max_length=170 dropped by data.on_overlength=skip\)",
    ):
        train(compose_train(overrides, run_dir=run_dir))
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "adapter").exists()
