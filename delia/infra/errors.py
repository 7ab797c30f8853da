"""User-facing errors: one line naming the file, line, field or option, and the fix."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from typing import NoReturn, TypeVar

T = TypeVar("T")


class DeliaError(Exception):
    """An error caused by the user's input or environment, reported as one line without a traceback."""


def where(path: object, line: int | None = None, field: str | None = None) -> str:
    """Format a location like ``data.jsonl:12 field 'messages'``."""
    text = str(path)
    if line is not None:
        text += f":{line}"
    if field is not None:
        text += f" field '{field}'"
    return text


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (its type name when it has none), at most ``limit`` chars."""
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:limit]


def show_traceback() -> bool:
    return os.environ.get("DELIA_DEBUG", "") not in ("", "0", "false")


def exit_with_error(message: object) -> NoReturn:
    """Print ``delia: error: <message>`` on stderr and exit with status 2."""
    print(f"delia: error: {message}", file=sys.stderr, flush=True)
    sys.exit(2)


def report_errors(fn: Callable[..., T]) -> Callable[..., T]:
    """Turn a :class:`DeliaError` raised by ``fn`` into one line on stderr and exit status 2.

    Set ``DELIA_DEBUG=1`` (or ``debug_traceback=true`` in the config) to see the traceback instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> T:
        try:
            return fn(*args, **kwargs)
        except DeliaError as err:
            if show_traceback():
                raise
            exit_with_error(err)

    return wrapper
