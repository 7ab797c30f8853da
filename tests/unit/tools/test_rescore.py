"""Re-scoring a job's generations with today's measures: a negative-control reply cut after opening the
dict counts as using the format; the run's own metrics.json is left as it was."""

from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from delia.tools.report import collect
from delia.tools.rescore import RESCORED, rescore_tree
from tests.conftest import TINY, compose_train

COMPLETE = "{'thought': 'matches', 'hallucination': 'no'}"


def fake_job(job: Path, tokenizer, budget: int) -> str:
    cut_reply = tokenizer.decode(tokenizer.encode("{'thought': '" + "very " * 200)[:budget])
    cfg = compose_train([*TINY, f"eval.max_new_tokens={budget}"])
    job.mkdir(parents=True)
    (job / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=False))
    samples = {
        "unseen_wordings": [{"label": "no", "reply": COMPLETE}, {"label": "no", "reply": cut_reply}],
        "negative": [{"label": "no", "reply": "It is fine."}, {"label": "no", "reply": cut_reply}],
    }
    (job / "samples.json").write_text(json.dumps(samples))
    old = {"negative/format_rate": 0.0, "unseen_wordings/format_acc": 0.5, "eval/loss": 1.0}
    (job / "metrics.json").write_text(json.dumps({"metrics": old}))
    return cut_reply


def test_rescoring_counts_a_cut_dict_as_using_the_format_and_keeps_metrics_json(tiny_model, tmp_path) -> None:
    _, tok = tiny_model
    fake_job(tmp_path / "0", tok, budget=20)
    before = (tmp_path / "0" / "metrics.json").read_text()
    assert rescore_tree(tmp_path, tok) == [tmp_path / "0"]
    rescored = json.loads((tmp_path / "0" / RESCORED).read_text())["metrics"]
    assert rescored["negative/format_rate"] == 0.5 and rescored["negative/complete_rate"] == 0.0
    assert rescored["negative/cut"] == 0.5
    assert rescored["unseen_wordings/format_begins"] == 1.0 and rescored["unseen_wordings/format_acc"] == 0.5
    assert rescored["unseen_wordings/format_acc_uncut"] == 1.0
    assert (tmp_path / "0" / "metrics.json").read_text() == before
    (tmp_path / "multirun.yaml").write_text("{}")
    [job] = collect(tmp_path).finished
    assert job.metrics["negative/format_rate"] == 0.5 and job.metrics["eval/loss"] == 1.0  # read over the old
