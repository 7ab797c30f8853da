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


def client(outputs: Path):
    from mlflow.tracking import MlflowClient

    from delia.dashboard import store_uri

    return MlflowClient(store_uri(outputs))


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


def test_a_folder_without_runs_is_a_one_line_error(tmp_path: Path) -> None:
    for extra in ([], ["--backend", "tensorboard"]):
        result = subprocess.run(
            [sys.executable, "-m", "delia.cli.dashboard", str(tmp_path), *extra],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        assert result.stderr.count("\n") == 1 and "delia: error:" in result.stderr
        assert "logger=" in result.stderr  # says how to get runs there


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


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "no chromium on PATH: .ci/run installs Debian's chromium package (apt-get install chromium)"
        )
    return found


@pytest.mark.slow
def test_the_dashboard_page_shows_the_runs_in_a_headless_browser(served: str, tmp_path: Path) -> None:
    """MLflow's UI is a JavaScript app: the run names are in the page only once it has rendered."""
    text = ""
    for budget_ms in (20_000, 60_000):  # a second, longer try on a busy machine; no timing is asserted
        profile = tmp_path / f"profile{budget_ms}"
        command = [
            chromium(),
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


# ------------------------------------------------------------------------------------------ TensorBoard
def tensorboard_run(save_dir: Path, seed: int, loss: float):
    from delia.dashboard.tensorboard import DeliaTensorBoardLogger

    labels = {"method": "delia", "baseline": "delia", "ablation": "none", "dataset": "sep_format",
              "model": "tiny_random", "seed": str(seed)}  # fmt: skip
    logger = DeliaTensorBoardLogger(str(save_dir), labels=labels, experiment="multirun/x")
    logger.log_hyperparams({"seed": seed, "optimizer": {"lr": 1e-3, "_target_": "torch.optim.AdamW"}})
    logger.log_metrics({"train/loss_task": loss + 1}, step=0)
    logger.log_metrics({"eval/loss": loss}, step=1)
    logger.close_run(save_dir)
    logger.finalize("success")
    return logger


def hparams_of(log_dir: Path) -> tuple[dict, list[str]]:
    """The session's hparams and the experiment's metric names, as TensorBoard's HParams plugin reads them."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(log_dir))
    events.Reload()
    content = events.PluginTagToContent("hparams")
    session = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    values = {k: v.string_value or v.number_value for k, v in session.session_start_info.hparams.items()}
    return values, [m.name.tag for m in experiment.experiment.metric_infos]


def test_tensorboard_logs_a_dir_per_job_with_its_hparams(tmp_path: Path) -> None:
    logger = tensorboard_run(tmp_path / "0", seed=1, loss=2.0)
    assert Path(logger.log_dir) == tmp_path / "0" / "tensorboard" / "delia-seed1"
    values, metrics = hparams_of(Path(logger.log_dir))
    assert (
        values["method"] == "delia"
        and values["seed"] == "1"
        and values["optimizer.lr"] == pytest.approx(1e-3)
    )
    assert {"eval/loss", "train/loss_task"} <= set(metrics)
    assert "hp_metric" not in metrics  # no placeholder metric


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


def test_a_resumed_run_continues_its_mlflow_run_and_a_finished_one_is_not_reused(tmp_path: Path) -> None:
    from delia.dashboard.mlflow_logger import DeliaMLFlowLogger

    def logger() -> DeliaMLFlowLogger:
        labels = {"method": "delia", "seed": "3"}
        return DeliaMLFlowLogger(str(tmp_path / "out"), str(tmp_path / "run"), labels=labels)

    first = logger()
    first.log_hyperparams({"optimizer": {"lr": 0.1}, "resume": False})
    first.log_metrics({"train/loss_task": 1.0}, step=0)
    first.finalize("success")  # Lightning ends fitting: the run stays open for evaluation
    first.close_run(tmp_path / "run")  # preempted: no metrics.json
    mlflow = client(tmp_path / "out")
    assert mlflow.get_run(first.run_id).info.status == "KILLED"
    resumed = logger()
    resumed.log_hyperparams({"optimizer": {"lr": 0.1}, "resume": True})  # a changed value is kept as it was
    assert resumed.run_id == first.run_id
    resumed.log_metrics({"train/loss_task": 0.5}, step=1)
    (tmp_path / "run" / "metrics.json").write_text("{}")
    resumed.close_run(tmp_path / "run")
    run = mlflow.get_run(first.run_id)
    assert run.info.status == "FINISHED" and run.info.run_name == "delia-seed3"
    assert [m.step for m in mlflow.get_metric_history(run.info.run_id, "train/loss_task")] == [0, 1]
    assert logger().run_id != first.run_id  # a finished run is never continued
