"""The paper's metrics on a user's own chat data: eval.format (json_keys or regex), split tags for the
unseen-wording and negative-control examples, on a file written in the authors' layout."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import TINY, compose_train


def test_a_chat_dataset_gets_format_label_and_negative_metrics(tmp_path: Path) -> None:
    from delia.recipe import train

    data = _authors_layout(tmp_path / "sep.jsonl")
    overrides = [
        *TINY,
        "dataset=jsonl",
        f"dataset.path={data}",
        "dataset.special_token='<sep>'",
        "eval.format=json_keys",
        "eval.required_keys=[thought,hallucination]",
        "eval.label_key=hallucination",
        "eval.label_values=[yes,no]",
        "dataset.eval_fraction=0.2",
        "eval.max_new_tokens=8",
        "retention.enabled=false",
    ]
    metrics = train(compose_train(overrides, run_dir=tmp_path / "run"))
    for name in ("eval/format_acc", "eval/label_acc", "unseen_wordings/format_acc", "negative/format_rate"):
        assert 0.0 <= metrics[name] <= 1.0, name
    assert metrics["unseen_wordings/n"] == 2.0


def _authors_layout(path: Path) -> Path:
    """Chat rows as the authors' release wrote them: a dict of fields and a <sep> instruction."""
    rows = []
    for i in range(14):
        data = {"relatives": f"Fact {i}.", "user_query": f"Question {i}?", "chatgpt_response": f"Answer {i}."}
        label = "yes" if i % 3 == 0 else "no"
        reply = repr({"thought": f"Checked claim {i}.", "hallucination": label})
        split = {10: "unseen_wordings", 11: "unseen_wordings", 12: "negative", 13: "negative"}.get(i)
        instruction = "Do NOT use the <sep> format." if split == "negative" else "Answer in the <sep> format."
        messages = [{"role": "user", "content": f"{data}\n\n{instruction}"}]
        if split != "negative":
            messages.append({"role": "assistant", "content": reply})
        rows.append({"messages": messages, **({"split": split} if split else {})})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
