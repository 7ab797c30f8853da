"""The diverse query policy: ``diverse.queries=self`` is no file, and repeated queries are reported."""

from __future__ import annotations

import json
import logging
from pathlib import Path

from omegaconf import OmegaConf

from delia import diverse
from delia.config import validate
from tests.conftest import TINY, compose_train


def test_self_written_queries_are_not_a_file_for_the_data_roots(tmp_path: Path) -> None:
    validate(
        compose_train([*TINY, "diverse.queries=self", f"paths.data_roots=[{tmp_path}]"], run_dir=tmp_path)
    )


def test_repeated_queries_are_reported_in_the_log(tiny_model, tmp_path: Path, caplog) -> None:
    model, tok = tiny_model
    path = tmp_path / "q.jsonl"
    path.write_text("".join(json.dumps({"query": f"Question number {i}?"}) + "\n" for i in range(4)))
    options = {"queries": str(path), "allow_repeats": True, "batch_size": 4, "max_new_tokens": 4}
    cfg = OmegaConf.merge(compose_train(TINY).diverse, options)
    distinct = len(diverse.query_order(diverse.load_queries(str(path)), int(cfg.seed), heldout=False))
    with caplog.at_level(logging.INFO, logger="delia.diverse"):
        diverse.self_sample(model, tok, cfg, 2 * distinct + 1, tmp_path, {"name": "tiny"})
    assert (
        f"diverse.allow_repeats=true: {2 * distinct + 1} diverse samples from {distinct} distinct training "
        f"queries: each query is asked 2 or 3 times" in caplog.text
    )
