"""``delia-report`` on a sweep logged with ``logger=mlflow``: its PNGs and tables join every run of the sweep.

Each job's ``mlflow.json`` names the store and the run; the report's files are attached to each run
under ``report/``, so the dashboard shows the sweep's plots beside every run's own curves.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from delia.dashboard.serve import pointers


def attach_report(sweep: Path, files: Iterable[Path]) -> int:
    """Attach the report's PNGs and ``report.md`` to the sweep's MLflow runs; the number of runs given them."""
    runs = pointers(sweep)
    shown = [f for f in files if f.suffix in (".png", ".md") and f.is_file()]
    if not runs or not shown:
        return 0
    from mlflow.tracking import MlflowClient

    client = MlflowClient(runs[0]["tracking_uri"])
    for run in runs:
        for path in shown:
            client.log_artifact(run["run_id"], str(path), "report")
    return len(runs)
