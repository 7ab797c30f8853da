"""The buffering-effect diagnostics: the measures mean what they say, and measuring changes nothing."""

from __future__ import annotations

import csv
from pathlib import Path

import torch
from safetensors.torch import load_file

from tests.conftest import TINY, compose_train


def test_measuring_changes_nothing_and_reaches_metrics_and_loggers(tiny_run, tmp_path: Path) -> None:
    from delia.recipe import train

    run_dir, plain = tiny_run
    measured_dir = tmp_path / "run"
    measured = train(
        compose_train([*TINY, "callbacks=buffering", "callbacks.buffering.k=2"], run_dir=measured_dir)
    )
    assert measured["eval/loss"] == plain["eval/loss"]
    a = load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))
    b = load_file(str(measured_dir / "adapter" / "adapter_model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert 0.0 < measured["buffer/diverse_cancellation"] <= 1.0 and "buffer/task_kept_step0" in measured
    with (measured_dir / "csv" / "metrics.csv").open() as handle:
        logged = [row for row in csv.DictReader(handle) if row.get("buffer/task_diverse_cos")]
    assert len(logged) >= 2  # step 0 and the end


def test_two_methods_measure_the_same_probe_and_log_identical_step0_diagnostics(tmp_path: Path) -> None:
    """DELIA and common_it start from the same model: at step 0 their diagnostics must be equal, which
    holds only if both use the same task probe (not each method's own training wordings)."""
    from delia.recipe import train

    step0 = {}
    for method in ("delia", "common_it"):
        overrides = [*TINY, f"method={method}", "callbacks=buffering", "callbacks.buffering.k=4"]
        metrics = train(compose_train([*overrides, "eval.generate=false"], run_dir=tmp_path / method))
        step0[method] = {k: v for k, v in metrics.items() if k.startswith("buffer/") and k.endswith("_step0")}
    assert step0["delia"] and step0["delia"] == step0["common_it"]
