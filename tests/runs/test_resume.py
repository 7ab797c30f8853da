"""A run killed with SIGKILL at an arbitrary step resumes to the same adapter weights and metrics."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from delia.infra.checkpoint_io import load_checkpoint_file
from tests.conftest import TINY

RUN = [
    *TINY,
    "trainer.max_steps=14",
    "trainer.val_check_interval=7",
    "trainer.deterministic=true",
    "checkpoint_every_n_steps=2",
    "dataset.train_size=12",
    "diverse.ratio=1.5",
    "data.batch_size=4",
    "eval.generate=false",
]


def start(run_dir: Path, *extra: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = [sys.executable, "-m", "delia.cli.train", *RUN, f"hydra.run.dir={run_dir}", *extra]
    return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out[-3000:]
    return out


def checkpoint_step(path: Path) -> int:
    try:
        return int(load_checkpoint_file(path)["global_step"])
    except Exception:  # not written yet, or being replaced
        return -1


def adapter(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "adapter" / "adapter_model.safetensors"))


@pytest.fixture(scope="module")
def references(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same run, never interrupted, per precision (built when a test first asks for it)."""
    return {}


def uninterrupted(
    references: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, precision: str
) -> Path:
    if precision not in references:
        run_dir = tmp_path_factory.mktemp("resume") / f"uninterrupted_{precision}"
        finish(start(run_dir, f"trainer.precision={precision}"))
        references[precision] = run_dir
    return references[precision]


@pytest.fixture
def reference(references: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    return uninterrupted(references, tmp_path_factory, "32-true")


def wait_for_checkpoint(proc: subprocess.Popen, last: Path, step: int) -> None:
    deadline = time.time() + 300
    while checkpoint_step(last) < step and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)


def assert_same_result(reference: Path, resumed: Path) -> None:
    expected, got = adapter(reference), adapter(resumed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    metrics = [json.loads((d / "metrics.json").read_text())["metrics"] for d in (reference, resumed)]
    assert metrics[0]["eval/loss"] == metrics[1]["eval/loss"]
    # what training saw survives the resume: the exposure counters are those of the unbroken run
    for key in ("train/seen_task_examples", "train/seen_diverse_examples", "protocol/task_exposure"):
        assert metrics[1][key] == metrics[0][key], key
    assert metrics[0]["train/seen_task_examples"] > 0


@pytest.mark.parametrize("precision", ["32-true", "bf16-mixed"])
def test_sigkill_then_resume_gives_identical_weights_and_metrics(
    references: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, tmp_path: Path, precision: str
) -> None:
    """In float32 and in bfloat16 mixed precision (autocast; weights and optimizer state in float32)."""
    reference = uninterrupted(references, tmp_path_factory, precision)
    killed = tmp_path / "killed"
    proc = start(killed, f"trainer.precision={precision}")
    last = killed / "checkpoints" / "last.ckpt"
    wait_for_checkpoint(proc, last, 6)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    step_at_kill = checkpoint_step(last)
    assert 6 <= step_at_kill < 14, "the kill did not land mid-training"
    assert not (killed / "metrics.json").exists()

    out = finish(start(killed, "resume=true", f"trainer.precision={precision}"))
    assert "Restoring states from the checkpoint" in out or "Restored all states" in out

    assert_same_result(reference, killed)
    rows = csv.DictReader((killed / "csv" / "metrics.csv").open())
    train_steps = [int(row["step"]) for row in rows if row.get("train/loss")]
    assert train_steps == list(range(14))  # the log from before the kill is kept, nothing logged twice


def test_a_run_killed_after_its_last_step_keeps_its_exposure_counts(reference: Path, tmp_path: Path) -> None:
    """Killed between the last step's checkpoint and metrics.json: the resume trains no step (Lightning
    skips on_train_start/end), and the counters are still those of the unbroken run, not -1."""
    killed = tmp_path / "after_last_step"
    shutil.copytree(reference, killed)
    assert checkpoint_step(killed / "checkpoints" / "last.ckpt") == 14
    (killed / "metrics.json").unlink()
    shutil.rmtree(killed / "adapter")
    finish(start(killed, "resume=true"))
    assert_same_result(reference, killed)


def test_preemption_signal_saves_stops_cleanly_and_resume_auto_continues(
    reference: Path, tmp_path: Path
) -> None:
    """SIGTERM end to end; SIGUSR1 (SLURM's --signal) takes the same path, checked on the callback below."""
    run_dir = tmp_path / "preempted"
    proc = start(run_dir, "resume=auto")
    wait_for_checkpoint(proc, run_dir / "checkpoints" / "last.ckpt", 2)
    proc.send_signal(signal.SIGTERM)
    out = finish(proc)  # exit status 0: a clean stop
    step = checkpoint_step(run_dir / "checkpoints" / "last.ckpt")
    assert f"DELIA run preempted at step {step}" in out and 2 <= step < 14
    assert not (run_dir / "metrics.json").exists()
    finish(start(run_dir, "resume=auto"))  # the requeued job: same command
    assert_same_result(reference, run_dir)


class _Trainer:
    """What the preemption callback uses of a Lightning trainer."""

    global_step = 5
    should_stop = False

    def __init__(self) -> None:
        self.saved: list[Path] = []

    def save_checkpoint(self, path: Path) -> None:
        self.saved.append(path)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_each_preemption_signal_saves_once_stops_and_gives_the_handler_back(
    tmp_path: Path, sig: signal.Signals
) -> None:
    from delia.callbacks.preemption import PreemptionCheckpoint

    previous = signal.getsignal(sig)
    callback, trainer = PreemptionCheckpoint(str(tmp_path)), _Trainer()
    callback.on_train_start(trainer, None)
    try:
        callback.on_train_batch_end(trainer, None)
        assert trainer.saved == [] and not trainer.should_stop  # no signal yet: nothing happens
        os.kill(os.getpid(), sig)  # handled by the callback, not fatal to this process
        callback.on_train_batch_end(trainer, None)
        callback.on_train_batch_end(trainer, None)
    finally:
        callback.on_train_end(trainer, None)
    assert trainer.saved == [tmp_path / "last.ckpt"] and trainer.should_stop
    assert callback.saved_at_step == 5 and signal.getsignal(sig) == previous


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    proc = start(tmp_path / "fresh", "resume=true")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "no checkpoint to resume from" in out and "Traceback" not in out
