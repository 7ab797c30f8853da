"""Shared command-line plumbing: one-line errors inside Hydra apps."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig

from delia.errors import DeliaError, exit_with_error, show_traceback

T = TypeVar("T")
# the Hydra configs live at the project root (conf/); the package is installed in editable mode
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("delia")


def group_options(conf_dir: str = CONF_DIR) -> dict[str, list[str]]:
    """Config groups and their options, read from ``conf/``."""
    root = Path(conf_dir)
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in root.iterdir() if d.is_dir()}


def unknown_group_option(argv: list[str], conf_dir: str = CONF_DIR) -> str | None:
    """The first ``group=option`` override naming an option that does not exist, as a one-line error."""
    groups = group_options(conf_dir)
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        if not sep or key not in groups or "(" in value or value in ("null", ""):
            continue  # not a group choice, or a sweep function like glob(*)
        for option in value.split(","):
            if option not in groups[key]:
                return f"unknown option {key}={option}: choose one of {', '.join(groups[key])} (conf/{key}/)"
    return None


def checked_argv(hydra_main: Callable[[], T]) -> Callable[[], T]:
    """Refuse an unknown config group option in one line before Hydra composes anything."""

    def main() -> T:
        problem = unknown_group_option(sys.argv[1:])
        if problem:
            exit_with_error(problem)
        return hydra_main()

    return main


def run_reporting_errors(fn: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    """Run ``fn(cfg)``; a :class:`DeliaError` becomes one line on stderr and exit status 2.

    Hydra catches ordinary exceptions itself, so the error is turned into ``SystemExit`` here.
    ``debug_traceback=true`` or ``DELIA_DEBUG=1`` shows the traceback instead.
    """
    try:
        return fn(cfg)
    except DeliaError as err:
        if show_traceback() or cfg.get("debug_traceback", False):
            raise
        log.error("%s", err)  # also in the run's log file
        exit_with_error(err)
