"""Shared command-line plumbing: one-line errors inside Hydra apps."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig

from delia.errors import DeliaError, show_traceback

T = TypeVar("T")
# the Hydra configs live at the project root (conf/); the package is installed in editable mode
CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("delia")


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
        print(f"delia: error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
