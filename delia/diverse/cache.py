"""The diverse sample cache: ``<cache>/diverse/<key>/samples.jsonl``, append-only, a checksum per record.

The key covers the model, the query set and every sampling setting, so another setting never reuses
samples it did not draw. Records are appended batch by batch and flushed; a torn last line (a kill in
the middle of a write) is cut, a corrupted record is dropped and sampled again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from delia.diverse.samplers import sampler_identity
from delia.infra.files import file_lock

PROMPT_VERSION = 3  # 2: retention queries reserved; 3: records say why each answer ended (finish)


def cache_key(
    model_id: dict[str, Any], queries: list[dict[str, str]], cfg: DictConfig, heldout: bool = False
) -> str:
    settings = {
        "part": "heldout" if heldout else "train",
        "model": model_id,
        "queries": hashlib.sha256(json.dumps(queries, sort_keys=True).encode()).hexdigest(),
        "temperature": float(cfg.temperature),
        "top_p": float(cfg.top_p),
        "max_new_tokens": int(cfg.max_new_tokens),
        "use_reference": bool(cfg.use_reference),
        "seed": int(cfg.seed),
        "prompt_version": PROMPT_VERSION,
        "top_k": "off",  # every backend samples without top-k (transformers applied 50 before)
        **sampler_identity(cfg),  # another backend or compute type draws other samples
        "truncated": str(cfg.get("truncated", "no_eos")),
        "system_prompt": cfg.get("system_prompt"),
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _checksum(record: dict[str, Any]) -> str:
    body = json.dumps(
        {k: record[k] for k in ("i", "query_id", "query", "response", "finish")}, sort_keys=True
    )
    return hashlib.sha256(body.encode()).hexdigest()[:16]


class SampleCache:
    """Append-only JSONL of samples with a checksum per record."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / "samples.jsonl"

    def locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the cache's lock: a second process waits here until the first one is done."""
        return file_lock(self.folder / "lock")

    def read(self) -> dict[int, dict[str, Any]]:
        """Intact records by index; torn or corrupted lines are skipped, duplicates keep the first."""
        records: dict[int, dict[str, Any]] = {}
        if not self.path.is_file():
            return records
        for raw in self.path.read_bytes().split(b"\n"):
            try:
                record = json.loads(raw)
            except ValueError:
                continue
            if isinstance(record, dict) and record.get("sha") == _checksum_or_none(record):
                records.setdefault(int(record["i"]), record)
        return records

    def drop_torn_tail(self) -> None:
        """Cut a last line that a kill left without its newline, so appends start on a fresh line."""
        if not self.path.is_file():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with self.path.open("r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)

    def append(self, records: list[dict[str, Any]]) -> None:
        with self.path.open("a", encoding="utf-8") as handle:
            for record in records:
                handle.write(json.dumps({**record, "sha": _checksum(record)}) + "\n")
            handle.flush()
            os.fsync(handle.fileno())


def _checksum_or_none(record: dict[str, Any]) -> str | None:
    try:
        return _checksum(record)
    except (KeyError, TypeError):
        return None
