"""Shared fixtures: compose the real configs, a session cache, one tiny end-to-end run."""

from __future__ import annotations

import copy
import functools
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, open_dict

from delia.cli import CONF_DIR

REPO = Path(__file__).resolve().parents[1]  # the project root: conf/, notebooks/, delia/


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Every test shares one cache (converted models, diverse samples) outside the user's outputs/."""
    cache = Path(os.environ.get("DELIA_TEST_CACHE") or tmp_path_factory.mktemp("delia_cache"))
    os.environ["DELIA_CACHE_DIR"] = str(cache)
    # the output root (runs without hydra.run.dir, the MLflow store of logger=mlflow) is not the user's either
    os.environ["DELIA_OUTPUT_ROOT"] = str(tmp_path_factory.mktemp("outputs"))
    os.environ["WANDB_MODE"] = "offline"
    os.environ.pop("WANDB_API_KEY", None)
    return cache


@functools.lru_cache(maxsize=512)
def _composed(overrides: tuple[str, ...], name: str) -> DictConfig:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=list(overrides))


def compose_train(overrides: list[str], run_dir: Path | None = None, name: str = "train") -> DictConfig:
    """The config ``delia-train <overrides>`` would get, with ``paths.run_dir`` set for in-process use.

    Composed once per distinct override list in a session (Hydra's compose is most of a config test's
    time); each call gets its own deep copy. Interpolations (``${oc.env:...}``) stay unresolved in the
    cached copy, so environment changes made by a test still apply.
    """
    cfg = copy.deepcopy(_composed(tuple(overrides), name))
    if run_dir is not None:
        with open_dict(cfg):
            cfg.paths.run_dir = str(run_dir)
    return cfg


TINY = ["model=tiny_random", "debug=fast", "trainer.enable_progress_bar=false"]


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> Callable[..., DictConfig]:
    def make(*overrides: str) -> DictConfig:
        return compose_train([*TINY, *overrides], run_dir=tmp_path / "run")

    return make


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> tuple[Path, dict]:
    """One tiny_random DELIA run (2 steps) shared by the tests that inspect a run's outputs."""
    from delia.recipe import train

    run_dir = tmp_path_factory.mktemp("tiny_run")
    metrics = train(compose_train(TINY, run_dir=run_dir))
    return run_dir, metrics


@pytest.fixture
def tiny_model(session_cache: Path):
    """A fresh tiny random Llama and the SmolLM2 tokenizer (built once, loaded per test)."""
    from delia.model import load_base

    return load_base(compose_train(TINY).model, session_cache)
