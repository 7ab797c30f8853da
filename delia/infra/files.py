"""File locks and atomic writes: a shared cache is built by one process while the others wait; a run dir
has one owner; a kill never leaves a half-written file or folder."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from delia.infra.errors import DeliaError


@contextlib.contextmanager
def atomic_path(path: Path, durable: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; once the block succeeds it is renamed onto ``path``.

    Whatever the block writes there (a file or a folder) appears whole or not at all; on an error the
    temporary is removed. ``durable`` flushes a file to disk before the rename.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}")
    try:
        yield tmp
        if durable and tmp.is_file():
            with tmp.open("rb+") as handle:
                os.fsync(handle.fileno())
        if tmp.is_dir() and path.is_dir():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and rename it into place."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: Path, payload: Any) -> None:
    """Write strict JSON atomically (NaN and infinities become null)."""
    atomic_write_text(path, json.dumps(_finite(payload), indent=2, default=str) + "\n")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def atomic_folder(
    target: Path, write: Callable[[Path], None], marker: str = "config.json", replace: bool = False
) -> Path:
    """Build a folder under a lock, in a temporary folder renamed into place.

    A kill leaves no half folder, and processes that waited for the lock reuse what the first one
    built (its ``marker`` file is there), unless ``replace``.
    """
    with file_lock(target.with_name(f".{target.name}.lock")):
        if (target / marker).is_file() and not replace:  # built by another process while we waited
            return target
        with atomic_path(target) as tmp:
            tmp.mkdir(parents=True)
            write(tmp)
    return target


def is_locked(lock_file: Path) -> bool:
    """Whether another open file holds an exclusive ``flock`` on ``lock_file`` (tried and released at once)."""
    if not lock_file.is_file():
        return False
    with lock_file.open("rb") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
    return False


@contextlib.contextmanager
def file_lock(path: Path, wait: bool = True, what: str = "") -> Iterator[None]:
    """Hold an exclusive lock on ``path``; with ``wait=False`` a held lock is an error naming ``what``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            raise DeliaError(
                f"{what or path.parent} is in use by {owner}; wait for it or pick another hydra.run.dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
