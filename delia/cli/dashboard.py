"""``delia-dashboard [DIR]``: open the experiment dashboard of a sweep, a run, or every run.

Starts ``mlflow server`` (or TensorBoard with ``--backend tensorboard``) on 127.0.0.1 with the store
the runs logged to, waits until it answers, prints the URL to open, and serves until Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from delia.dashboard.serve import (
    BACKENDS,
    DEFAULT_PORTS,
    Dashboard,
    find_dashboard,
    free_port,
    health_url,
    server_command,
    wait_until_up,
)
from delia.infra.errors import DeliaError, report_errors


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="delia-dashboard",
        description="Serve the MLflow (or TensorBoard) dashboard of a sweep, a run, or every run, on 127.0.0.1.",
    )
    parser.add_argument(
        "dir",
        nargs="?",
        type=Path,
        default=None,
        metavar="DIR",
        help="a sweep dir, a run dir, or the output root (default: outputs/, or $DELIA_OUTPUT_ROOT)",
    )
    parser.add_argument("--backend", choices=BACKENDS, default="mlflow", help="default: mlflow")
    parser.add_argument(
        "--port", type=int, default=None, help="default: 5000 (mlflow) or 6006, or a free one"
    )
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1 (this machine only)")
    return parser.parse_args(argv)


def _stop(proc: subprocess.Popen) -> None:
    """End the server and the workers it started (its own process group)."""
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _exit_on_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def serve(dashboard: Dashboard, host: str, port: int) -> None:
    """Run the server until it ends or this process is interrupted; print the URL once it answers."""
    log = Path(tempfile.gettempdir()) / f"delia-dashboard-{dashboard.backend}-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            server_command(dashboard, host, port),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        try:
            wait_until_up(health_url(dashboard, host, port), lambda: proc.poll() is None)
        except DeliaError as err:
            raise DeliaError(f"{err} (server log: {log})") from None
        print(
            f"delia-dashboard: {dashboard.backend} shows {dashboard.what}\n"
            f"open http://{host}:{port}{dashboard.page}\n"
            f"(server log: {log}; Ctrl-C stops the server)",
            flush=True,
        )
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        _stop(proc)


@report_errors
def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    dashboard = find_dashboard(args.dir, args.backend)
    wanted = DEFAULT_PORTS[args.backend] if args.port is None else args.port
    serve(dashboard, args.host, free_port(args.host, wanted))


if __name__ == "__main__":
    sys.exit(main())
