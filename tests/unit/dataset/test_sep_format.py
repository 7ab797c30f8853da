"""The built-in <sep> task: content, splits, anisotropic diversification, determinism."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from delia.dataset import sep_format
from delia.infra.errors import DeliaError
from tests.conftest import compose_train


@pytest.fixture
def cfg(tmp_path: Path):
    return compose_train([], run_dir=tmp_path).dataset


def test_resources_are_large_enough() -> None:
    res = sep_format.load_resources()
    assert len({f.question.lower() for f in res.facts}) >= 300
    assert len({f.domain for f in res.facts}) >= 8
    assert len({i.text for i in res.train}) >= 60
    assert len({i.text for i in res.heldout}) >= 20
    assert res.negative
    assert not {i.text for i in res.heldout} & {i.text for i in res.train}
    for field in ("position", "register", "length"):
        assert len({getattr(i, field) for i in res.train}) >= 2, field


def test_instructions_mention_sep_but_never_describe_it() -> None:
    res = sep_format.load_resources()
    for instruction in (*res.train, *res.heldout):
        assert instruction.text.count("<sep>") == 1
        lowered = instruction.text.lower()
        assert "json" not in lowered and "thought" not in lowered and "{" not in lowered
    assert "json" in res.prior_description.lower() and "thought" in res.prior_description.lower()


def test_splits_have_configured_sizes_and_labels(cfg) -> None:
    splits = sep_format.build_splits(cfg)
    assert [len(splits[s]) for s in sep_format.SPLITS] == [
        cfg.train_size,
        cfg.eval_size,
        cfg.heldout_size,
        cfg.negative_size,
    ]
    assert Counter(e["label"] for e in splits["train"])["yes"] == round(cfg.train_size * cfg.yes_fraction)
    train_target = splits["train"][0]["messages"][-1]
    assert train_target["role"] == "assistant" and "'hallucination'" in train_target["content"]
    assert all(len(e["messages"]) == 1 for e in splits["negative"])


def test_eval_facts_are_unseen_in_training_and_prior_description_never_shown(cfg) -> None:
    splits = sep_format.build_splits(cfg)
    train_facts = {e["fact_id"] for e in splits["train"]}
    for split in ("seen_wordings", "unseen_wordings", "negative"):
        assert not train_facts & {e["fact_id"] for e in splits[split]}
    description = sep_format.prior_description()
    assert all(description not in m["content"] for e in splits["train"] for m in e["messages"])


def test_heldout_split_uses_only_heldout_wordings(cfg) -> None:
    splits = sep_format.build_splits(cfg)
    train_wordings = {e["instruction"] for e in splits["train"]}
    assert not train_wordings & {e["instruction"] for e in splits["unseen_wordings"]}


@pytest.mark.parametrize("diversify", [True, False])
def test_split_names_say_which_wordings_they_hold(cfg, diversify: bool) -> None:
    """seen_wordings holds only wordings this run trained on; unseen_wordings none of them, and the
    same examples whatever the method (with or without diversification)."""
    cfg.diversify_instructions = diversify
    splits = sep_format.build_splits(cfg)
    trained = {e["instruction"] for e in splits["train"]}
    assert {e["instruction"] for e in splits["seen_wordings"]} <= trained
    assert not trained & {e["instruction"] for e in splits["unseen_wordings"]}
    cfg.diversify_instructions = not diversify
    assert sep_format.build_splits(cfg)["unseen_wordings"] == splits["unseen_wordings"]


def test_training_facts_are_not_probe_questions(cfg) -> None:
    from delia.eval.probe import normalize, probe_questions

    train_pool, _ = sep_format.fact_pools(cfg)
    assert not {normalize(f.question) for f in train_pool} & probe_questions()
    asked = [f for f in sep_format.load_resources().facts if normalize(f.question) in probe_questions()]
    assert asked  # precondition: the built-in facts do hold probe questions


def test_diversification_switch(cfg) -> None:
    diverse = sep_format.build_splits(cfg)["train"]
    cfg.diversify_instructions = False
    fixed = sep_format.build_splits(cfg)["train"]
    assert len({e["instruction"] for e in diverse}) == min(
        len(diverse), len(sep_format.load_resources().train)
    )
    assert len({e["instruction"] for e in fixed}) == 1
    assert [e["fact_id"] for e in diverse] == [e["fact_id"] for e in fixed]


def test_deterministic_for_a_seed_and_different_across_seeds(cfg) -> None:
    first, again = sep_format.build_splits(cfg), sep_format.build_splits(cfg)
    assert first == again
    cfg.seed = cfg.seed + 1
    assert sep_format.build_splits(cfg)["train"] != first["train"]


def test_too_many_examples_names_the_option(cfg) -> None:
    cfg.train_size = 10_000
    with pytest.raises(DeliaError, match="dataset.train_size"):
        sep_format.build_splits(cfg)
