"""logger=mlflow and delia-dashboard: a 2x2 sweep logs one MLflow experiment with a run per job, the
dashboard serves it on 127.0.0.1 (REST API and, in headless Chromium, the rendered page); TensorBoard
gets a log dir per job and hparams per run."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import TINY
from tests.unit.dashboard.test_dashboard import client, tensorboard_run

GRID = ["ablation=none,no_task_diversification", "seed=1,2"]


FAST = [*TINY, "logger=mlflow", "eval.generate=false", "retention.enabled=false"]


NAMES = {
    "delia-seed1",
    "delia-seed2",
    "delia_no_task_diversification-seed1",
    "delia_no_task_diversification-seed2",
}


TAGS = ("method", "baseline", "ablation", "dataset", "model", "seed")


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output root of the sweep (DELIA_OUTPUT_ROOT): it holds mlflow.db."""
    return tmp_path_factory.mktemp("dash") / "outputs"


@pytest.fixture(scope="module")
def sweep(outputs: Path) -> Path:
    """A 2x2 sweep (method x seed) on the tiny model, run as one `delia-train -m` process."""
    folder = outputs / "multirun" / "grid"
    env = {**os.environ, "DELIA_OUTPUT_ROOT": str(outputs)}
    command = [sys.executable, "-m", "delia.cli.train", "-m", *FAST, *GRID, f"hydra.sweep.dir={folder}"]
    result = subprocess.run(command, cwd=outputs.parent, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return folder


def test_a_sweep_is_one_experiment_with_a_named_tagged_run_per_job(sweep: Path, outputs: Path) -> None:
    mlflow = client(outputs)
    experiment = mlflow.get_experiment_by_name("multirun/grid")
    runs = mlflow.search_runs([experiment.experiment_id])
    assert {run.info.run_name for run in runs} == NAMES
    for run in runs:
        tags = run.data.tags
        assert run.info.status == "FINISHED"
        assert run.info.run_name == f"{tags['method']}-seed{tags['seed']}"
        assert (tags["baseline"], tags["dataset"], tags["model"]) == ("delia", "sep_format", "tiny_random")
        assert tags["ablation"] in ("none", "no_task_diversification")
        assert run.data.params["ablation.name"] == tags["ablation"]  # the flattened config
        assert run.data.params["optimizer.lr"] and run.data.params["seed"] == tags["seed"]
        assert {"eval/loss", "repr/l2_layer1", "train/loss_task", "train/loss_diverse"} <= set(
            run.data.metrics
        )
        steps = [m.step for m in mlflow.get_metric_history(run.info.run_id, "train/loss_task")]
        assert steps == [0, 1]  # the per-source loss over the steps, not only its last value
        assert {a.path for a in mlflow.list_artifacts(run.info.run_id)} >= {"metrics.json", "config.yaml"}
    job = json.loads((sweep / "0" / "mlflow.json").read_text())
    assert job["experiment_name"] == "multirun/grid" and job["tracking_uri"].endswith("outputs/mlflow.db")


def test_the_final_metrics_in_mlflow_are_those_of_metrics_json(sweep: Path, outputs: Path) -> None:
    mlflow = client(outputs)
    for job in sorted(p for p in sweep.iterdir() if p.name.isdigit()):
        run = mlflow.get_run(json.loads((job / "mlflow.json").read_text())["run_id"])
        written = json.loads((job / "metrics.json").read_text())["metrics"]
        assert run.data.metrics["eval/loss"] == pytest.approx(written["eval/loss"])
        assert run.data.metrics["repr/l2_layer2"] == pytest.approx(written["repr/l2_layer2"])


def test_delia_report_attaches_its_plots_to_the_sweeps_runs(sweep: Path, outputs: Path, capsys) -> None:
    from delia.cli.report import main

    main([str(sweep), "--out", str(sweep.parent / "report")])
    assert "attached the plots to the sweep's 4 MLflow runs" in capsys.readouterr().out
    mlflow = client(outputs)
    for run in mlflow.search_runs([mlflow.get_experiment_by_name("multirun/grid").experiment_id]):
        attached = {a.path for a in mlflow.list_artifacts(run.info.run_id, "report")}
        assert "report/loss_curves.png" in attached, attached


def test_the_dashboard_page_of_a_run_dir_and_of_a_sweep(sweep: Path) -> None:
    from delia.dashboard.serve import find_dashboard

    run_id = json.loads((sweep / "1" / "mlflow.json").read_text())["run_id"]
    sweep_page = find_dashboard(sweep, "mlflow").page
    assert re.fullmatch(r"/#/experiments/\d+/runs", sweep_page)
    assert find_dashboard(sweep / "1", "mlflow").page == f"{sweep_page}/{run_id}"
    assert find_dashboard(sweep.parents[1], "mlflow").page == "/"  # the output root: every experiment


# ------------------------------------------------------------------------------------ served dashboards
def free_port() -> int:
    from delia.dashboard.serve import free_port as pick

    return pick("127.0.0.1", 0)


@pytest.fixture(scope="module")
def served(sweep: Path) -> Iterator[str]:
    """``delia-dashboard <sweep> --port <free>`` running; yields the URL it printed."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "delia.cli.dashboard", str(sweep), "--port", str(free_port())],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        lines = []
        for line in proc.stdout:  # the command prints the URL once the server answers
            lines.append(line)
            if line.startswith("open http://127.0.0.1:"):
                yield line.split()[1]
                break
        else:
            pytest.fail("delia-dashboard ended without a URL: " + "".join(lines))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)


def rest(url: str, path: str, body: dict | None = None) -> dict:
    base = url.split("/#")[0]
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"{base}/api/2.0/mlflow/{path}", data=data)
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())


@pytest.mark.slow
def test_the_dashboard_serves_the_sweep_over_mlflows_rest_api(served: str) -> None:
    experiment_id = re.search(r"/#/experiments/(\d+)/runs$", served).group(1)
    found = rest(served, "experiments/get-by-name?experiment_name=multirun/grid")["experiment"]
    assert found["experiment_id"] == experiment_id
    runs = rest(served, "runs/search", {"experiment_ids": [experiment_id], "max_results": 50})["runs"]
    assert len(runs) == 4
    for run in runs:
        tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
        metrics = {m["key"]: m["value"] for m in run["data"]["metrics"]}
        assert set(TAGS) <= set(tags)
        assert tags["mlflow.runName"] == f"{tags['method']}-seed{tags['seed']}"
        assert metrics["eval/loss"] > 0 and "repr/l2_layer1" in metrics and "train/loss_diverse" in metrics
    assert {run["info"]["run_name"] for run in runs} == NAMES


CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def chromium() -> str:
    """Debian's chromium. Without it the browser test is skipped, naming the package, except under CI
    (``CI=true``, which .ci/run sets and where it installs the package): there a missing browser fails."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        why = "no chromium on PATH: install Debian's chromium package (apt-get install chromium)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{why}; under CI=true the browser test must run (.ci/run installs it)")
        pytest.skip(why)
    return found


@pytest.mark.slow
def test_the_dashboard_page_shows_the_runs_in_a_headless_browser(
    chromium: str, served: str, tmp_path: Path
) -> None:
    """MLflow's UI is a JavaScript app: the run names are in the page only once it has rendered."""
    text = ""
    for budget_ms in (20_000, 60_000):  # a second, longer try on a busy machine; no timing is asserted
        profile = tmp_path / f"profile{budget_ms}"
        command = [
            chromium,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--virtual-time-budget={budget_ms}",
        ]
        result = subprocess.run([*command, "--dump-dom", served], capture_output=True, text=True, timeout=300)
        text = re.sub(r"<[^>]+>", " ", re.sub(r"<(script|style)\b.*?</\1>", " ", result.stdout, flags=re.S))
        if NAMES <= set(re.findall(r"[\w]+-seed\d", text)):
            break
    assert NAMES <= set(re.findall(r"[\w]+-seed\d", text)), text[:2000]
    assert "multirun/grid" in text or "grid" in text


@pytest.mark.slow
def test_the_tensorboard_dashboard_lists_a_run_per_job(tmp_path: Path) -> None:
    for job, seed in (("0", 1), ("1", 2)):
        tensorboard_run(tmp_path / job, seed=seed, loss=float(seed))
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "delia.cli.dashboard",
            str(tmp_path),
            "--backend",
            "tensorboard",
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert any(line.startswith(f"open http://127.0.0.1:{port}/") for line in proc.stdout)
        runs: list[str] = []
        for _ in range(60):  # TensorBoard finds the event files a moment after it answers
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs", timeout=30) as answer:
                runs = json.loads(answer.read())
            if len(runs) >= 2:
                break
            time.sleep(1)
        assert set(runs) == {"0/tensorboard/delia-seed1", "1/tensorboard/delia-seed2"}
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
