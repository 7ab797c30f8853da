"""The tokenized diverse data on disk, memory-mapped: training memory does not grow with the diverse ratio.

DELIA mixes ``ratio x downstream`` diverse examples (the release: 260 x 100 = 26,000 replies of up to
512 tokens). Held as Python lists their token ids would take gigabytes; here they are tokenized once into
an Arrow IPC file under ``<cache>/tokenized/<key>.arrow`` (keyed by the records, the tokenizer and the
length settings) and read back through a memory map, one example at a time. The file is written under a
temporary name and renamed into place, under a lock, so concurrent jobs and DDP ranks build it once.
"""

from __future__ import annotations

import bisect
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa

from delia.data.tokenize import encode_all
from delia.infra.files import atomic_path, file_lock

CHUNK = 1024  # records tokenized and written per Arrow record batch
SCHEMA = pa.schema([("input_ids", pa.list_(pa.int32())), ("labels", pa.list_(pa.int32()))])


def store_key(records: list[dict[str, Any]], tokenizer: Any, max_length: int, on_overlength: str) -> str:
    digest = hashlib.sha256()
    for record in records:
        digest.update(
            json.dumps([record["messages"], record.get("truncated", False)], sort_keys=True).encode()
        )
    settings = {
        "records": digest.hexdigest(),
        "tokenizer": getattr(tokenizer, "name_or_path", ""),
        "vocab": len(tokenizer),
        "template": hashlib.sha256(str(getattr(tokenizer, "chat_template", "")).encode()).hexdigest(),
        "max_length": max_length,
        "on_overlength": on_overlength,
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def _batches(
    records: list[dict[str, Any]], tokenizer: Any, max_length: int, on_overlength: str
) -> Iterator[pa.RecordBatch]:
    for start in range(0, len(records), CHUNK):
        items = encode_all(
            tokenizer, records[start : start + CHUNK], max_length, on_overlength, "diverse data"
        )
        yield pa.record_batch(
            [
                pa.array([i["input_ids"] for i in items], SCHEMA.field("input_ids").type),
                pa.array([i["labels"] for i in items], SCHEMA.field("labels").type),
            ],
            schema=SCHEMA,
        )


def build_store(
    records: list[dict[str, Any]], tokenizer: Any, max_length: int, on_overlength: str, cache_dir: Path
) -> Path:
    """Tokenize ``records`` into ``<cache>/tokenized/<key>.arrow`` (once) and return its path."""
    folder = Path(cache_dir) / "tokenized"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{store_key(records, tokenizer, max_length, on_overlength)}.arrow"
    with file_lock(folder / f"{path.stem}.lock"):
        if path.is_file():
            return path
        with (
            atomic_path(path) as tmp,
            pa.OSFile(str(tmp), "wb") as sink,
            pa.ipc.new_file(sink, SCHEMA) as writer,
        ):
            for batch in _batches(records, tokenizer, max_length, on_overlength):
                writer.write_batch(batch)
    return path


class DiverseStore:
    """Read-only, memory-mapped view of a store: ``store[i]`` is ``{"input_ids": [...], "labels": [...]}``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._open()

    def _open(self) -> None:
        self._reader = pa.ipc.open_file(pa.memory_map(str(self.path), "r"))
        self._sizes = [self._reader.get_batch(b).num_rows for b in range(self._reader.num_record_batches)]
        self._starts = [sum(self._sizes[:b]) for b in range(len(self._sizes))]

    def __len__(self) -> int:
        return sum(self._sizes)

    def __getitem__(self, i: int) -> dict[str, list[int]]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        b = bisect.bisect_right(self._starts, i) - 1
        batch = self._reader.get_batch(b)
        row = i - self._starts[b]
        return {name: batch.column(name)[row].as_py() for name in ("input_ids", "labels")}

    def __getstate__(self) -> dict[str, Any]:  # a DataLoader worker or a spawned rank reopens the map
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]
        self._open()
