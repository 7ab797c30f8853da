"""A run killed with SIGKILL at an arbitrary step resumes to the same adapter weights and metrics."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from delia.checkpoint_io import load_checkpoint_file
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
    args = [sys.executable, "-m", "delia.train", *RUN, f"hydra.run.dir={run_dir}", *extra]
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


def test_sigkill_then_resume_gives_identical_weights_and_metrics(tmp_path: Path) -> None:
    reference = tmp_path / "uninterrupted"
    finish(start(reference))

    killed = tmp_path / "killed"
    proc = start(killed)
    last = killed / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while checkpoint_step(last) < 6 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    step_at_kill = checkpoint_step(last)
    assert 6 <= step_at_kill < 14, "the kill did not land mid-training"
    assert not (killed / "metrics.json").exists()

    out = finish(start(killed, "resume=true"))
    assert "Restoring states from the checkpoint" in out or "Restored all states" in out

    expected, got = adapter(reference), adapter(killed)
    assert expected.keys() == got.keys()
    for name in expected:
        assert torch.equal(expected[name], got[name]), name
    metrics = [json.loads((d / "metrics.json").read_text())["metrics"] for d in (reference, killed)]
    assert metrics[0]["eval/loss"] == pytest.approx(metrics[1]["eval/loss"], abs=0)


def test_resume_without_a_checkpoint_is_refused(tmp_path: Path) -> None:
    proc = start(tmp_path / "fresh", "resume=true")
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "no checkpoint to resume from" in out and "Traceback" not in out
