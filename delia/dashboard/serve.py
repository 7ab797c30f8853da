"""What ``delia-dashboard [dir]`` serves: the MLflow store (or TensorBoard logs) of a sweep, a run, or all runs.

- a sweep dir or a run dir: the ``mlflow.json`` of its jobs names the store and the experiment; the URL
  opens that experiment (a run dir: that run);
- the output root (default ``outputs/``, or ``DELIA_OUTPUT_ROOT``): ``mlflow.db`` there, every experiment;
- ``--backend tensorboard``: TensorBoard on the folder's event files (a log dir per job).

The server listens on 127.0.0.1 only; the command waits until it answers, then prints the URL.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from delia.dashboard import POINTER_FILE, STORE_FILE, store_uri
from delia.infra.errors import DeliaError

BACKENDS = ("mlflow", "tensorboard")
DEFAULT_PORTS = {"mlflow": 5000, "tensorboard": 6006}


@dataclass(frozen=True)
class Dashboard:
    """A server to start and the page of it to open."""

    backend: str
    source: str  # the MLflow tracking URI or the TensorBoard log dir
    page: str  # the part of the URL after host:port
    what: str  # for the message: which runs it shows


def default_folder() -> Path:
    return Path(os.environ.get("DELIA_OUTPUT_ROOT") or "outputs")


def pointers(folder: Path) -> list[dict[str, str]]:
    """The ``mlflow.json`` of a run dir, or of the jobs of a sweep dir (one level down)."""
    found = []
    for path in sorted([*folder.glob(POINTER_FILE), *folder.glob(f"*/{POINTER_FILE}")]):
        try:
            found.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue  # a job killed while writing it: the other jobs still say where the store is
    return found


def mlflow_dashboard(folder: Path) -> Dashboard:
    """The store and page for a run dir, a sweep dir, or a folder holding ``mlflow.db``."""
    runs = pointers(folder)
    if runs:
        experiments = {str(run["experiment_id"]) for run in runs}
        page = "/"
        if len(experiments) == 1:
            page = f"/#/experiments/{experiments.pop()}/runs"
            if len(runs) == 1 and (folder / POINTER_FILE).is_file():
                page += f"/{runs[0]['run_id']}"
        what = f"{len(runs)} run(s) of {runs[0]['experiment_name']}"
        return Dashboard("mlflow", runs[0]["tracking_uri"], page, what)
    if (folder / STORE_FILE).is_file():
        return Dashboard("mlflow", store_uri(folder), "/", f"every run logged under {folder}")
    raise DeliaError(
        f"{folder}: no MLflow runs here (no {POINTER_FILE} in it or its jobs, no {STORE_FILE}); "
        f"train with logger=mlflow (or logger=many), or add --backend tensorboard for TensorBoard logs"
    )


def tensorboard_dashboard(folder: Path) -> Dashboard:
    """TensorBoard on every event file under ``folder``."""
    if not next(folder.rglob("events.out.tfevents.*"), None):
        raise DeliaError(
            f"{folder}: no TensorBoard logs here; train with logger=tensorboard (or logger=many), "
            f"or drop --backend tensorboard for MLflow"
        )
    return Dashboard("tensorboard", str(folder.resolve()), "/", f"the TensorBoard logs under {folder}")


def find_dashboard(folder: Path | None, backend: str) -> Dashboard:
    """The dashboard of ``folder`` (default: the output root) for ``backend``."""
    folder = folder or default_folder()
    if not folder.is_dir():
        raise DeliaError(f"{folder} is not a directory: pass a sweep dir, a run dir or the output root")
    if backend == "tensorboard":
        return tensorboard_dashboard(folder)
    return mlflow_dashboard(folder)


def server_command(dashboard: Dashboard, host: str, port: int) -> list[str]:
    """The command that serves ``dashboard`` (the same Python, so the project's environment)."""
    if dashboard.backend == "tensorboard":
        return [sys.executable, "-m", "tensorboard.main", "--logdir", dashboard.source, "--host", host,
                "--port", str(port)]  # fmt: skip
    return [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", dashboard.source, "--host", host,
            "--port", str(port), "--workers", "1"]  # fmt: skip


def free_port(host: str, wanted: int) -> int:
    """``wanted`` when it is free (0: any), else a free port the system picks."""
    for port in (wanted, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise DeliaError(f"no free port on {host}; pass --port <a free port>")


def wait_until_up(url: str, alive: Callable[[], bool], timeout_s: float = 180.0) -> None:
    """Poll ``url`` until it answers; ``alive()`` False means the server process ended."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not alive():
            raise DeliaError(
                f"the dashboard server stopped before it answered at {url}; see its output above"
            )
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.5)
    raise DeliaError(f"the dashboard server did not answer at {url} within {timeout_s:.0f} s")


def health_url(dashboard: Dashboard, host: str, port: int) -> str:
    path = "/health" if dashboard.backend == "mlflow" else "/data/logdir"
    return f"http://{host}:{port}{path}"
