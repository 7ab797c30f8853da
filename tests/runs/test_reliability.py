"""Non-finite losses, concurrent jobs, secrets, pickle-free checkpoints, data roots."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from delia.infra.errors import DeliaError
from delia.recipe import train
from tests.conftest import TINY, compose_train


def test_non_finite_loss_stops_naming_step_and_source_and_keeps_the_checkpoint(tiny_cfg) -> None:
    cfg = tiny_cfg(
        "optimizer.lr=1e6",
        "trainer.gradient_clip_val=null",
        "trainer.max_steps=8",
        "trainer.val_check_interval=8",
        "checkpoint_every_n_steps=1",
        "eval.generate=false",
    )
    with pytest.raises(
        DeliaError,
        match=r"non-finite loss at step (\d+) in the .*(task|diverse).* last good checkpoint: .*last\.ckpt",
    ) as err:
        train(cfg)
    step = int(err.value.args[0].split("step ")[1].split()[0])
    from delia.infra.checkpoint_io import load_checkpoint_file

    saved = load_checkpoint_file(Path(cfg.paths.run_dir) / "checkpoints" / "last.ckpt")
    assert saved["global_step"] <= step  # the checkpoint from before the bad step is still there
    assert not (Path(cfg.paths.run_dir) / "metrics.json").exists()


def popen(args: list[str], cwd: Path, cache: Path) -> subprocess.Popen:
    env = {**os.environ, "DELIA_CACHE_DIR": str(cache), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_two_samplers_on_one_cache_key_build_it_once(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ["delia.cli.sample", *TINY, "diverse.ratio=3", "diverse.batch_size=2"]
    procs = [popen([*args, f"hydra.run.dir=s{i}"], tmp_path, cache) for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    [samples] = cache.glob("diverse/*/samples.jsonl")
    indices = [json.loads(line)["i"] for line in samples.read_text().splitlines()]
    assert sorted(indices) == list(range(24))  # 8 x 3, each once: one process sampled, the other reused
    assert sum("0 of 24 samples present" in out for out in outs) == 1


HOLD_LOCK = """
import sys, time
from pathlib import Path
from delia.infra.files import file_lock
with file_lock(Path(sys.argv[1]) / ".delia.lock", wait=False, what="run dir"):
    print("held", flush=True)
    time.sleep(300)
"""


def test_a_run_dir_in_use_is_refused(tmp_path: Path, tiny_cfg) -> None:
    """Another process holds the run dir's lock (as a running delia-train does from before it writes its
    config to the end): a second run on that dir stops at once, naming the holder, and writes nothing."""
    cfg = tiny_cfg()
    run_dir = Path(cfg.paths.run_dir)
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(DeliaError, match=rf"run dir {run_dir} is in use by pid {holder.pid}; wait"):
            train(cfg)
    finally:
        holder.kill()
        holder.communicate()
    assert sorted(p.name for p in run_dir.iterdir()) == [".delia.lock"]


def test_secrets_never_reach_the_saved_config_or_logged_hyperparameters(tiny_cfg, monkeypatch) -> None:
    monkeypatch.setenv("MY_SERVICE_API_KEY", "sk-live-0123456789abcdef")
    # key names that mark a secret are covered in test_security.py (no such key is an option of the config)
    cfg = tiny_cfg("notes=pulled from https://u:${oc.env:MY_SERVICE_API_KEY}@host", "eval.generate=false")
    train(cfg)
    run_dir = Path(cfg.paths.run_dir)
    for path in (run_dir / "config.yaml", run_dir / "csv" / "hparams.yaml"):
        text = path.read_text()
        assert "sk-live-0123456789abcdef" not in text, path
        assert "REDACTED" in text
    assert "special_token: <sep>" in (run_dir / "config.yaml").read_text()  # ordinary settings stay


def test_checkpoints_are_safetensors_and_pickle_checkpoints_are_refused(tiny_run, tmp_path: Path) -> None:
    import torch
    from safetensors import safe_open

    run_dir, _ = tiny_run
    with safe_open(str(run_dir / "checkpoints" / "last.ckpt"), "pt") as handle:
        assert handle.metadata()["format"] == "delia-ckpt-v1"
    pickled = tmp_path / "old.ckpt"
    torch.save({"state_dict": {}}, pickled)
    cfg = compose_train([*TINY, f"ckpt_path={pickled}", "eval.generate=false"], run_dir=tmp_path / "run")
    with pytest.raises(DeliaError, match="allow_pickle=true"):
        train(cfg)


def test_trust_remote_code_is_off_and_logged(caplog, session_cache: Path) -> None:
    import logging

    from delia.model import load_base

    for option in ("smollm2_135m", "llama2_7b_chat", "gemma_7b_it", "smollm2_135m_hub", "tiny_random"):
        assert compose_train([f"model={option}"]).model.trust_remote_code is False
    with caplog.at_level(logging.INFO, logger="delia.model.sources"):
        load_base(compose_train(TINY).model, session_cache)
    assert "model tiny_random: trust_remote_code=False" in caplog.text


def test_data_paths_outside_the_data_roots_are_refused(tmp_path: Path) -> None:
    from delia.config import validate

    inside, outside = tmp_path / "data", tmp_path / "elsewhere"
    inside.mkdir()
    cfg = compose_train(
        ["dataset=jsonl", f"dataset.path={inside}/../elsewhere/x.jsonl", f"paths.data_roots=[{inside}]"],
        run_dir=tmp_path,
    )
    with pytest.raises(DeliaError, match="dataset.path=.* is outside the allowed data roots"):
        validate(cfg)
    cfg = compose_train(
        ["dataset=jsonl", f"dataset.path={inside}/x.jsonl", f"paths.data_roots=[{inside}]"], run_dir=tmp_path
    )
    validate(cfg)
    assert not outside.exists()
