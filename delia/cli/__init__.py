"""Shared command-line plumbing: one-line errors inside Hydra apps.

Before Hydra runs, :func:`checked_argv` refuses in one line (exit status 2) an override that Hydra's own
grammar cannot parse, a group option that does not exist and a key the config does not have; each line
names the override and the fix.
"""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from omegaconf import DictConfig, OmegaConf

from delia.infra.errors import DeliaError, exit_with_error, show_traceback

T = TypeVar("T")
# the Hydra configs live at the project root (conf/); the package is installed in editable mode
CONF_DIR = str(Path(__file__).resolve().parents[2] / "conf")
log = logging.getLogger("delia")


def group_options(conf_dir: str = CONF_DIR) -> dict[str, list[str]]:
    """Config groups and their options, read from ``conf/``."""
    root = Path(conf_dir)
    return {d.name: sorted(p.stem for p in d.glob("*.yaml")) for d in root.iterdir() if d.is_dir()}


def hydra_overrides(argv: list[str]) -> list[str]:
    """The overrides among ``argv`` as Hydra's own argument parser reads them (flags such as ``-m`` or
    ``--cfg job`` left out); none when Hydra would answer the command line itself (``--version``)."""
    from hydra._internal.utils import get_args_parser

    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args, _ = get_args_parser().parse_known_args(argv)
    except SystemExit:
        return []
    return [str(arg) for arg in args.overrides]


def unparsable_override(argv: list[str]) -> str | None:
    """The first override that Hydra's override grammar cannot parse, as a one-line error."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.errors import OverrideParseException

    parser = OverridesParser.create()
    for arg in hydra_overrides(argv):
        try:
            parser.parse_overrides([arg])
        except OverrideParseException as err:
            return f"cannot parse the override {arg!r} ({_grammar_problem(err)}): {_quoting_fix(arg)}"
    return None


def _grammar_problem(err: Exception) -> str:
    """Hydra's reason, without its preamble and its link."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    reasons = [line for line in lines if not line.startswith(("Error parsing override", "See https://"))]
    return (reasons or lines or ["not key=value"])[0]


def _quoting_fix(arg: str) -> str:
    """Quote the value (the shell keeps inner quotes inside outer ones of the other kind)."""
    key, sep, value = arg.partition("=")
    if not sep:
        return "an override is key=value"
    quoted = f"'{key}=\"{value}\"'" if "'" in value else f"\"{key}='{value}'\""
    return f"quote the value, as in {quoted} (see https://hydra.cc/docs/advanced/override_grammar/basic/)"


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


def unknown_key(argv: list[str], config_name: str = "train", conf_dir: str = CONF_DIR) -> str | None:
    """The first ``a.b=value`` override (without ``+``) whose key the composed config does not have.

    Hydra refuses such an override too, but in several lines; this names the option it probably meant.
    The config is composed with the first choice of every group the command line picks.
    """
    groups = group_options(conf_dir)
    choices, keys = [], []
    for arg in argv:
        key, sep, value = arg.partition("=")
        if not sep or arg.startswith(("-", "+", "~", "hydra")):
            continue
        if key in groups:
            choices.append(f"{key}={value.split(',')[0]}")
        elif "." in key:
            keys.append(key)
    if not keys:
        return None
    try:
        cfg = _compose(config_name, choices, conf_dir)
    except Exception:  # a problem Hydra itself reports when it composes
        return None
    for key in keys:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(cfg, parent)
        if isinstance(node, DictConfig) and leaf not in list(node.keys()):  # `in` skips ??? values
            close = difflib.get_close_matches(leaf, [str(k) for k in node], n=1)
            hint = f"did you mean {parent}.{close[0]}? " if close else ""
            return f"{key} is not an option of {parent}; {hint}it takes: {', '.join(map(str, node))}"
    return None


def _compose(config_name: str, overrides: list[str], conf_dir: str) -> DictConfig:
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=conf_dir, version_base="1.3"):
        return compose(config_name=config_name, overrides=overrides)


def checked_argv(hydra_main: Callable[[], T], config_name: str = "train") -> Callable[[], T]:
    """Refuse an override Hydra cannot parse, an unknown group option or an unknown option key in one
    line (exit status 2) before Hydra composes anything."""

    def main() -> T:
        argv = sys.argv[1:]
        problem = unparsable_override(argv) or unknown_group_option(argv) or unknown_key(argv, config_name)
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
        log.error("%s", err, extra={"file_only": True})  # in the run's log file; the console gets one line
        exit_with_error(err)
