"""The end of a run on the console: the results table, the run dir, and the next commands to type."""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

from delia.dashboard import sweep_dir


def dashboard_line(loggers: list[Any], folder: Path, what: str) -> str:
    """``delia-dashboard <folder>`` for the dashboard this run logged to (MLflow first, else TensorBoard)."""
    kinds = " ".join(type(logger).__name__ for logger in loggers)
    command = f"delia-dashboard {shlex.quote(str(folder))}"
    if "MLFlow" in kinds:
        return f"{command}   (MLflow, {what})"
    if "TensorBoard" in kinds:
        return f"{command} --backend tensorboard   ({what})"
    return f"{command}   (needs logger=mlflow or logger=tensorboard; {what} logged CSV only)"


# on the console, the representation measures are the centroid distances (absolute, scale-free) and their
# change from step 0; metrics.json holds every measure (per key word, description context, step 0)
CONSOLE_REPR = re.compile(r"repr/(rel_)?l2_layer\d+(_change)?$")


def console_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics the console table shows."""
    return {
        k: v
        for k, v in metrics.items()
        if not k.endswith("_step0") and (not k.startswith("repr/") or CONSOLE_REPR.match(k))
    }


def summary(metrics: dict[str, Any], run_dir: Path, loggers: list[Any], sweep: Path | None) -> str:
    """The lines a finished run ends with."""
    from delia.eval.evaluate import results_table

    folder = sweep if sweep is not None else run_dir
    what = "this sweep" if sweep is not None else "this run"
    return "\n".join(
        [
            f"\nDELIA run finished: {run_dir}",
            results_table(console_metrics(metrics)),
            f"(all {len(metrics)} metrics, with the value at step 0 of each representation measure: metrics.json)",
            "",
            f"run dir:      {run_dir}",
            f"dashboard:    {dashboard_line(loggers, folder, what)}",
            f"re-evaluate:  delia-eval run_dir={shlex.quote(str(run_dir))}",
        ]
    )


def print_summary(run_dir: Path, metrics: dict[str, Any], loggers: list[Any]) -> None:
    """Print :func:`summary` for this run (a multirun job points the dashboard at its sweep)."""
    print(summary(metrics, run_dir, loggers, sweep_dir()), flush=True)
