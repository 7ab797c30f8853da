"""The memory-mapped diverse store gives back exactly what in-memory tokenization gives."""

from __future__ import annotations

import pickle
from pathlib import Path

from delia.data.tokenize import encode_all
from delia.diverse import store as diverse_store
from delia.diverse.store import DiverseStore, build_store


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


def test_training_from_the_store_equals_training_in_memory(tmp_path: Path) -> None:
    from delia.recipe import train
    from tests.conftest import TINY, compose_train

    out = {}
    for stream in (True, False):
        cfg = compose_train(
            [*TINY, "peft.lora_dropout=0", f"data.stream_diverse={stream}"], run_dir=tmp_path / str(stream)
        )
        out[stream] = train(cfg)
    assert out[True]["eval/loss"] == out[False]["eval/loss"]
    assert (Path(compose_train(TINY).paths.cache_dir) / "tokenized").is_dir()
