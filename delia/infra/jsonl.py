"""Reading JSONL and line-based files so that every error names the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from delia.infra.errors import DeliaError, where

FIX_FORMAT = "each line must be a JSON object"
MAX_LINE_BYTES = 16 * 1024 * 1024


def read_lines(handle: Any, path: Path, max_bytes: int) -> Iterator[tuple[int, bytes]]:
    """Lines of at most ``max_bytes``; a longer one is an error, read no further than the limit."""
    number = 0
    while raw := handle.readline(max_bytes + 1):
        number += 1
        if len(raw) > max_bytes and not raw.endswith(b"\n"):
            raise DeliaError(
                f"{where(path, number)}: line longer than {max_bytes} bytes; split the record or raise "
                f"dataset.max_line_bytes"
            )
        yield number, raw


def read_jsonl(path: Path, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line number, object)`` for each non-empty line; a bad line raises a one-line error."""
    if path.is_dir():
        raise DeliaError(f"{path}: is a directory; point dataset.path to a .jsonl file")
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise DeliaError(f"{path}: file not found; check dataset.path") from None
    with handle:
        for number, raw in read_lines(handle, path, max_line_bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise DeliaError(
                    f"{where(path, number)}: not UTF-8 ({err.reason}); re-encode the file as UTF-8"
                ) from None
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DeliaError(f"{where(path, number)}: not valid JSON ({err.msg}); {FIX_FORMAT}") from None
            if not isinstance(obj, dict):
                raise DeliaError(
                    f"{where(path, number)}: a JSON {type(obj).__name__}, not an object; {FIX_FORMAT}"
                )
            yield number, obj
