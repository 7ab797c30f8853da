"""Labels: loss on assistant tokens only, never all masked; over-long examples as configured."""

from __future__ import annotations

import pytest

from delia.data.tokenize import IGNORE_INDEX, EncodeStats, encode_all, encode_chat
from delia.dataset import sep_format
from delia.infra.errors import DeliaError
from tests.conftest import compose_train

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": "Green."},
]


def test_only_assistant_replies_carry_labels(tiny_model) -> None:
    _, tok = tiny_model
    item = encode_chat(tok, MESSAGES, max_length=512)
    trained = [t for t, label in zip(item["input_ids"], item["labels"], strict=True) if label != IGNORE_INDEX]
    text = tok.decode(trained)
    assert "Blue." in text and "Green." in text
    assert "colour" not in text and "Be brief" not in text and "Another" not in text
    full = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert tok.decode(item["input_ids"]) == full


def test_labels_never_all_masked_on_the_builtin_task(tiny_model, tmp_path) -> None:
    _, tok = tiny_model
    splits = sep_format.build_splits(compose_train([], run_dir=tmp_path).dataset)
    items = encode_all(tok, splits["train"] + splits["seen_wordings"], 512, "error", "sep")
    assert len(items) == len(splits["train"]) + len(splits["seen_wordings"])
    for item in items:
        labelled = [label for label in item["labels"] if label != IGNORE_INDEX]
        assert labelled, "an example has no trained token"
        assert tok.decode(labelled).startswith("{'thought'")


def test_overlength_error_skip_truncate(tiny_model) -> None:
    _, tok = tiny_model
    long = [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(DeliaError, match=r"f\.jsonl:3: \d+ tokens, longer than data.max_length=64"):
        encode_chat(tok, long, 64, "error", origin="f.jsonl:3")
    stats = EncodeStats()
    assert encode_chat(tok, long, 64, "skip", stats=stats) is None and stats.skipped == 1
    # truncation that cuts away the whole reply skips the example rather than training on nothing
    assert encode_chat(tok, long, 64, "truncate", stats=stats) is None and stats.skipped == 2
    short_prompt = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 300}]
    item = encode_chat(tok, short_prompt, 64, "truncate", stats=stats)
    assert len(item["input_ids"]) == 64 and stats.truncated == 1
