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


# on the console, the representation measures are the centroid distances (L2, relative L2, the scale-free
# percentile) and their change from step 0; metrics.json holds every measure (per key word, description
# context, step 0)
CONSOLE_REPR = re.compile(r"repr/(rel_l2|l2|pct)_layer\d+(_change)?$")


def console_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics the console table shows."""
    return {
        k: v
        for k, v in metrics.items()
        if not k.endswith("_step0") and (not k.startswith("repr/") or CONSOLE_REPR.match(k))
    }


CUT_WARNING = 0.05  # a share of replies cut at the eval budget above which the summary says so


def cut_warnings(metrics: dict[str, Any]) -> list[str]:
    """One line per generated split whose replies the eval budget cut more than :data:`CUT_WARNING` of."""
    budget = metrics.get("eval/max_new_tokens")
    tokens = f"{budget:.0f} new tokens" if isinstance(budget, float) else "eval.max_new_tokens"
    lines = []
    for key, value in metrics.items():
        if key.endswith("/cut") and isinstance(value, float) and value > CUT_WARNING:
            split = key.removesuffix("/cut")
            lines.append(
                f"warning: the eval budget ({tokens}) cut {value:.0%} of the {split} replies; "
                f"whether they finish the format is unknown: raise eval.max_new_tokens or eval.budget_factor"
            )
    return lines


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
            *cut_warnings(metrics),
            "",
            f"run dir:      {run_dir}",
            f"dashboard:    {dashboard_line(loggers, folder, what)}",
            f"re-evaluate:  delia-eval run_dir={shlex.quote(str(run_dir))}",
        ]
    )


def print_summary(run_dir: Path, metrics: dict[str, Any], loggers: list[Any]) -> None:
    """Print :func:`summary` for this run (a multirun job points the dashboard at its sweep)."""
    print(summary(metrics, run_dir, loggers, sweep_dir()), flush=True)
