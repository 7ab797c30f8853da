"""The Icelandic-English translation task: local loading, splits, wordings, DiPMT hints, metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.unit.dataset.test_translation import write_jsonl


@pytest.mark.parametrize("baseline", ["delia", "dipmt"])
def test_translation_runs_end_to_end_with_chrf_and_bleu(tmp_path: Path, baseline: str, monkeypatch) -> None:
    from delia import recipe
    from tests.conftest import TINY, compose_train

    data = write_jsonl(tmp_path / "pairs.jsonl")
    seen: list[str] = []
    real = recipe.evaluate

    def spy(model, tokenizer, splits, cfg, *rest):
        seen.extend(r["messages"][0]["content"] for r in splits["eval"])
        return real(model, tokenizer, splits, cfg, *rest)

    monkeypatch.setattr(recipe, "evaluate", spy)
    overrides = [
        *TINY,
        "dataset=wmt21_is_en",
        f"dataset.path={data}",
        "dataset.train_size=8",
        "dataset.eval_size=4",
    ]
    metrics = recipe.train(compose_train([*overrides, f"baseline={baseline}"], run_dir=tmp_path / "run"))
    assert 0 <= metrics["eval/chrf"] <= 100 and 0 <= metrics["eval/bleu"] <= 100
    assert "repr/l2_layer1" not in metrics  # no new token in this task
    samples = json.loads((tmp_path / "run" / "samples.json").read_text())["eval"]
    assert len(samples) == 4 and all({"source", "reference", "reply"} <= set(s) for s in samples)
    hinted = any("In this context, the word" in text for text in seen)
    assert hinted == (baseline == "dipmt")
    assert (metrics["train/seen_task_examples"] == 0) == (baseline == "dipmt")
