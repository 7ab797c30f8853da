"""The memory-mapped diverse store gives back exactly what in-memory tokenization gives."""

from __future__ import annotations

import pickle
from pathlib import Path

from delia.data import store as diverse_store
from delia.data.store import DiverseStore, build_store
from delia.data.tokenize import encode_all


def _records(n: int) -> list[dict]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"question {i}?"},
                {"role": "assistant", "content": "an answer " * (i % 7 + 1)},
            ]
        }
        for i in range(n)
    ]


def test_store_matches_in_memory_encoding_across_record_batches(
    tiny_model, tmp_path: Path, monkeypatch
) -> None:
    _, tok = tiny_model
    monkeypatch.setattr(diverse_store, "CHUNK", 4)  # several record batches
    records = _records(11)
    store = DiverseStore(build_store(records, tok, 64, "truncate", tmp_path))
    expected = encode_all(tok, records, 64, "truncate", "x")
    assert len(store) == 11 and [store[i] for i in range(11)] == expected
    reopened = pickle.loads(pickle.dumps(store))  # DataLoader workers / spawned ranks reopen the map
    assert reopened[10] == expected[10]


def test_store_is_built_once_per_key(tiny_model, tmp_path: Path) -> None:
    _, tok = tiny_model
    first = build_store(_records(3), tok, 64, "truncate", tmp_path)
    mtime = first.stat().st_mtime_ns
    assert (
        build_store(_records(3), tok, 64, "truncate", tmp_path) == first and first.stat().st_mtime_ns == mtime
    )
    assert build_store(_records(3), tok, 128, "truncate", tmp_path) != first
    assert build_store(_records(4), tok, 64, "truncate", tmp_path) != first


def test_the_data_module_trains_the_same_batches_from_the_store_as_from_memory(tiny_model, tmp_path) -> None:
    """data.stream_diverse=true (the store) and false (in memory) give the training step identical batches."""
    import torch

    from delia.data.datamodule import DeliaDataModule
    from delia.data.mixing import DIVERSE
    from delia.schedule import Interleave

    _, tok = tiny_model
    batches = {}
    for folder in (tmp_path, None):
        dm = DeliaDataModule(
            tok, _records(6), _records(12), _records(2), Interleave(), max_steps=6, batch_size=3,
            max_length=64, seed=3, packing=True, diverse_store_dir=folder,
        )  # fmt: skip
        dm.setup("fit")
        assert isinstance(dm.examples[DIVERSE], DiverseStore) == (folder is not None)
        batches[folder] = list(dm.train_dataloader())
    stored, in_memory = batches[tmp_path], batches[None]
    assert len(stored) == len(in_memory) == 6
    for a, b in zip(stored, in_memory, strict=True):
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
