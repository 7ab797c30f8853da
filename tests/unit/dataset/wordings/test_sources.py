"""Each source of the pool: none and one (the dataset's own), a file (text or JSONL), the rules
(deterministic given the seed, every register, length and position, every required string kept). The
paraphraser has its own file (test_paraphrase.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from delia.dataset.wordings.base import Wording, normalized
from delia.dataset.wordings.pool import candidates, read_file
from delia.dataset.wordings.rules import request_core, rule_wordings, variants
from delia.infra.errors import DeliaError
from tests.conftest import compose_train

BASE = Wording("Check the reply against the reference and answer in the <sep> format.", "none", "after")
OWN = [BASE, Wording("Judge the reply in the <sep> format.", "none")]
AXES = (["imperative", "question", "polite", "terse"], ["short", "long"], ["before", "after"])


def options(*overrides: str):
    return compose_train([f"wordings.{o}" for o in overrides]).wordings


def test_none_gives_the_datasets_own_wordings_and_one_its_fixed_wording() -> None:
    assert candidates(["none"], OWN, OWN[0], options(), (), None, 1) == OWN
    [one] = candidates(["one"], OWN, OWN[0], options(), (), None, 1)
    assert (one.text, one.source, one.position) == (BASE.text, "one", "after")


def test_a_text_file_gives_one_wording_a_line_and_jsonl_its_text_field(tmp_path: Path) -> None:
    text = tmp_path / "w.txt"
    text.write_text("Answer in the <sep> format.\n\n  Reply using   <sep>.  \n")
    assert [w.text for w in read_file(str(text), "text")] == [
        "Answer in the <sep> format.",
        "Reply using <sep>.",
    ]
    lines = [{"wording": "Use <sep>.", "position": "before"}, {"wording": "Reply in <sep>."}]
    jsonl = tmp_path / "w.jsonl"
    jsonl.write_text("".join(json.dumps(line) + "\n" for line in lines))
    got = read_file(str(jsonl), "wording")
    assert [(w.text, w.position, w.source) for w in got] == [
        ("Use <sep>.", "before", "file"),
        ("Reply in <sep>.", None, "file"),
    ]
    pooled = candidates(["file"], OWN, OWN[0], options(f"file={jsonl}", "file_field=wording"), (), None, 1)
    assert [w.text for w in pooled] == ["Use <sep>.", "Reply in <sep>."]


@pytest.mark.parametrize(
    ("content", "field", "message"),
    [
        (None, "text", r"^wordings\.file=.*: file not found; give a text file"),
        ("\n\n", "text", r"^wordings\.file=.*: holds no wording"),
        (
            '{"other": "x"}\n',
            "text",
            r"w\.jsonl:1 field 'text': missing or not a text; .*wordings\.file_field",
        ),
    ],
)
def test_a_bad_wordings_file_is_one_line(
    tmp_path: Path, content: str | None, field: str, message: str
) -> None:
    path = tmp_path / ("w.jsonl" if content and content.startswith("{") else "w.txt")
    if content is not None:
        path.write_text(content)
    with pytest.raises(DeliaError, match=message):
        read_file(str(path), field)


def test_the_rules_write_every_register_length_and_position_and_keep_every_string() -> None:
    written = variants(BASE, *AXES, seed=7)
    assert len(written) == 16 and len({w.text for w in written}) == 16
    assert {(w.register, w.length) for w in written} == {(r, n) for r in AXES[0] for n in AXES[1]}
    assert {w.position for w in written} == {"before", "after"}
    assert all("<sep>" in w.text and w.source == "rules" for w in written)
    by = {(w.register, w.length, w.position): w.text for w in written}
    assert by[("question", "short", "before")].endswith("?")
    assert by[("polite", "long", "after")].count("<sep>") == 2  # the goal restated
    terse = by[("terse", "short", "before")]
    assert " the " not in terse and len(terse.split()) < len(BASE.text.split())


def test_the_rules_are_deterministic_given_the_seed() -> None:
    first = rule_wordings(OWN, *AXES, seed=3)
    assert rule_wordings(OWN, *AXES, seed=3) == first
    assert rule_wordings(OWN, *AXES, seed=4) != first


def test_rules_rewrite_the_listed_wordings_or_the_datasets_own() -> None:
    cfg = options()
    from_one = candidates(["one", "rules"], OWN, OWN[0], cfg, (), None, 1)
    assert {normalized(w.text) for w in from_one[1:]} == {
        normalized(w.text) for w in variants(BASE, *AXES, seed=1)
    }
    alone = candidates(["rules"], OWN, OWN[0], cfg, (), None, 1)
    # the variants of both own wordings; the own wordings themselves are not pooled
    assert len(alone) == 32 and all(w.source == "rules" for w in alone)


def test_a_question_that_is_no_request_gives_no_rule_variant() -> None:
    assert request_core("Does the reply stay faithful to the reference?") is None
    assert request_core("Could you answer in the <sep> format?") == "answer in the <sep> format"
    assert request_core("Please judge the reply.") == "judge the reply"


def test_the_group_options_list_the_sources_they_are_named_for() -> None:
    sources = {
        o: list(compose_train([f"wordings={o}"]).wordings.sources)
        for o in ("none", "one", "rules", "paraphrase")
    }
    assert sources == {
        "none": ["none"],
        "one": ["one"],
        "rules": ["one", "rules"],
        "paraphrase": ["one", "paraphrase"],
    }
    assert OmegaConf.select(compose_train([]), "wordings.sources") == ["none"]  # the default: the task's own
