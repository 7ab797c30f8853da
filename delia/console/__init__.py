"""The console of every delia app: each message once, in one place (the console and the run's log file).

Hydra configures the logging (``conf/hydra/job_logging/delia.yaml``: a short console format, the full
one in ``<run dir>/train.log``). :func:`setup_console` adds the filters below and routes what the
libraries print by themselves through that logging: Lightning's own console handler is removed (its
messages reached the console twice), transformers' handler likewise, and Python warnings become log
records. Messages and warnings that the user cannot act on are dropped by their exact text
(:data:`QUIET_MESSAGES`, :data:`QUIET_WARNINGS`); every other warning stays.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
import warnings
from typing import TextIO

# log records dropped by their exact text: advertisements and notes about defaults we set on purpose
QUIET_MESSAGES = frozenset(
    {
        # Lightning's advertisement, printed by every Trainer that has no LitLogger
        "💡 Tip: For seamless cloud logging and experiment tracking, try installing "
        "[litlogger](https://pypi.org/project/litlogger/) to enable LitLogger, which logs metrics and "
        "artifacts automatically to the Lightning Experiments platform.",
        # conf/trainer/default.yaml sets limit_val_batches=1.0 on purpose
        "`Trainer(limit_val_batches=1.0)` was configured so 100% of the batches will be used..",
        # token_init=resize chooses this init on purpose (token_init=random|mean|description are the others)
        "The new embeddings will be initialized from a multivariate normal distribution that has old "
        "embeddings' mean and covariance. As described in this article: "
        "https://nlp.stanford.edu/~johnhew/vocab-expansion.html. To disable this, use `mean_resizing=False`",
    }
)
# warnings dropped by their exact text: deprecations inside the libraries, not in the user's code or config
QUIET_WARNINGS = (
    # transformers, called by peft
    "`is_gradient_checkpointing` is deprecated and will be removed in v6. "
    "Use `is_activation_checkpointing` instead.",
    # torch, called by Lightning
    "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec) and "
    "treespec.is_leaf()` instead.",
)


class Quiet(logging.Filter):
    """Drop the records listed in :data:`QUIET_MESSAGES` (exact text)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() not in QUIET_MESSAGES


class NotFileOnly(logging.Filter):
    """Keep off the console a record logged with ``extra={"file_only": True}`` (e.g. an error that is
    printed as one ``delia: error:`` line on stderr and only recorded in the log file)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


class ShownOnce(logging.Filter):
    """Show a message again only if it says something new: an identical record (same logger, level and
    text, e.g. Lightning's "Seed set to 1" when the recipe re-seeds) is not printed a second time.

    Hydra builds the handlers anew for every job of a multirun, so each job shows its own messages.
    """

    def __init__(self, name: str = "") -> None:
        super().__init__(name)
        self._seen: set[tuple[str, int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, record.levelno, record.getMessage())
        if key in self._seen:
            return False
        self._seen.add(key)
        return True


class ConsoleHandler(logging.StreamHandler):
    """On a terminal, writes around open progress bars instead of into them (in a log, a bar is a line)."""

    def emit(self, record: logging.LogRecord) -> None:
        if not (sys.stderr.isatty() and self.stream.isatty()):
            super().emit(record)
            return
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except Exception:
            self.handleError(record)


class ConsoleFormatter(logging.Formatter):
    """``[12:00:01] message``; warnings and errors also name their level and source."""

    def __init__(self) -> None:
        super().__init__(datefmt="%H:%M:%S")

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime(self.datefmt or "%H:%M:%S", self.converter(record.created))
        text = record.getMessage()
        if record.exc_info:
            text = f"{text}\n{self.formatException(record.exc_info)}"
        if record.levelno >= logging.WARNING:
            source = "" if record.name in ("root", "py.warnings") else f" ({record.name})"
            return f"[{stamp}] {record.levelname}{source}: {text}"
        return f"[{stamp}] {text}"


def _log_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    """Python warnings as log records (console and log file), on one line with where they come from."""
    if file is not None:  # someone asked for a specific stream: keep Python's behaviour
        file.write(warnings.formatwarning(message, category, filename, lineno, line))
        return
    logging.getLogger("py.warnings").warning("%s: %s (%s:%d)", category.__name__, message, filename, lineno)


def _route_library_logging(import_first: bool) -> None:
    """Lightning and transformers print through their own handlers besides the root's: keep the root's.

    ``import_first``: both are imported here first, so that the handlers they add at import (Lightning)
    or at their first message (transformers) exist by now and are removed, whenever the entry point
    imports them; otherwise only what is already imported is routed (an app that does not train).
    """
    # datasets' own bars (TRL's preprocessing in delia-bench) follow none of the console's rules either
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if import_first:
        import lightning.pytorch  # noqa: F401
        import transformers  # noqa: F401

    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            logger.removeHandler(handler)
        logger.propagate = True
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_default_handler()
        hf_logging.enable_propagation()
        # its own bars (loading and writing weights) follow none of the console's rules (delia.console.progress)
        hf_logging.disable_progress_bar()


def _filter_handlers() -> None:
    """Every handler of the root logger drops :data:`QUIET_MESSAGES`; the console shows a message once
    and leaves the file-only records to the log file."""
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, Quiet) for f in handler.filters):
            handler.addFilter(Quiet())
        on_console = isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        )
        if on_console and not any(isinstance(f, ShownOnce) for f in handler.filters):
            handler.addFilter(NotFileOnly())
            handler.addFilter(ShownOnce())


def setup_console(standalone: bool = False) -> None:
    """Route the libraries' output through the app's logging; drop what nobody can act on.

    Every entry point calls it once per job, first thing: the Hydra apps after Hydra has configured the
    logging (``conf/hydra/job_logging/delia.yaml``); an app without Hydra (``delia-report``,
    ``delia-dashboard``) with ``standalone=True``, which gives the root logger the same console handler
    and leaves Lightning and transformers unimported.
    """
    if standalone and not logging.getLogger().handlers:
        handler = ConsoleHandler(sys.stdout)
        handler.setFormatter(ConsoleFormatter())
        logging.getLogger().addHandler(handler)
        logging.getLogger().setLevel(logging.INFO)
    _route_library_logging(import_first=not standalone)
    _filter_handlers()
    for text in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=re.escape(text) + r"\Z")
    warnings.showwarning = _log_warning
