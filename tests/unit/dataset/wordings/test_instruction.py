"""Finding the instruction apart from the data, on the three chat layouts: a pattern, a column, the
instruction column, a shared sentence found automatically; no row matched is one line saying how to
mark it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import DictConfig

from delia.dataset import chat
from delia.dataset.wordings.base import Wording
from delia.dataset.wordings.checks import check_rows
from delia.dataset.wordings.instruction import locate, own_wordings, split_known
from delia.infra.errors import DeliaError
from tests.conftest import compose_train
from tests.unit.dataset.wordings.chat_files import INSTRUCTION, authors_chat_file, fields


def dataset_cfg(path: Path, *overrides: str) -> DictConfig:
    return compose_train(["dataset=jsonl", f"dataset.path={path}", *overrides]).dataset


def located(path: Path, *overrides: str):
    cfg = dataset_cfg(path, *overrides)
    records = chat.load_records(str(path), cfg)
    return records, locate(records, cfg)


def write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def assert_round_trip(records, found) -> None:
    """A matched turn is rebuilt exactly from its instruction and its data."""
    for record, split in zip(records, found.found, strict=True):
        if split is not None:
            assert split.render(Wording(split.instruction, "none")) == record["messages"][0]["content"]


@pytest.mark.parametrize("before", [False, True])
def test_the_sentence_the_user_turns_share_is_found_automatically(tmp_path: Path, before: bool) -> None:
    records, found = located(authors_chat_file(tmp_path / "d.jsonl", n=12, before=before))
    assert found.matched == 12 and INSTRUCTION in found.how
    assert {f.instruction for f in found.found} == {INSTRUCTION}
    assert {f.position for f in found.found} == {"before" if before else "after"}
    assert found.found[3].data == repr(fields(3))  # the data part, untouched
    assert_round_trip(records, found)


def test_a_sentence_named_in_the_config_is_the_instruction_where_the_rows_have_it(tmp_path: Path) -> None:
    path = authors_chat_file(tmp_path / "d.jsonl", n=6)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    rows[2]["messages"][0]["content"] = "A row without it."
    records, found = located(write(path, rows), f"dataset.instruction.sentence='{INSTRUCTION}'")
    assert found.how == "dataset.instruction.sentence"
    assert found.matched == 5 and found.found[2] is None  # counted, and left as it is
    assert_round_trip(records, found)


def test_a_pattern_with_named_groups_splits_the_turn(tmp_path: Path) -> None:
    rows = [
        {"prompt": f"Task: add the numbers.\nInput: {i} and {i + 1}\nAnswer:", "response": str(2 * i + 1)}
        for i in range(6)
    ]
    path = write(tmp_path / "p.jsonl", rows)
    pattern = "dataset.instruction.pattern='Task: (?P<instruction>[^\\n]*)\\n(?P<data>.*)'"
    records, found = located(path, "dataset.format=prompt_response", pattern)
    assert found.matched == 6 and found.how == "dataset.instruction.pattern"
    assert (
        found.found[2].instruction == "add the numbers." and found.found[2].data == "Input: 2 and 3\nAnswer:"
    )
    assert found.found[2].lead == "Task: "
    assert_round_trip(records, found)


def test_a_column_names_each_rows_instruction(tmp_path: Path) -> None:
    wordings = ["Sum these.", "Add them up."]
    rows = [
        {"prompt": f"{i} + {i}\n\n{wordings[i % 2]}", "response": str(2 * i), "task": wordings[i % 2]}
        for i in range(6)
    ]
    path = write(tmp_path / "c.jsonl", rows)
    records, found = located(path, "dataset.format=prompt_response", "dataset.instruction.column=task")
    assert found.matched == 6
    assert [f.instruction for f in found.found[:2]] == wordings
    assert [w.text for w in own_wordings(found)] == wordings  # equal use: the first seen first
    assert_round_trip(records, found)


def test_the_instruction_layout_rewrites_the_instruction_and_never_the_input(tmp_path: Path) -> None:
    rows = [
        {"instruction": "Add the numbers.", "input": f"{i} and {i}", "output": str(2 * i)} for i in range(4)
    ]
    _, found = located(write(tmp_path / "a.jsonl", rows), "dataset.format=instruction")
    assert found.matched == 4 and found.how == "the instruction column"
    assert found.found[1].data == "1 and 1" and found.found[1].position == "before"
    assert found.found[1].render(Wording("Sum them.", "rules", "after")) == "1 and 1\n\nSum them."


def test_rows_that_share_no_sentence_match_nothing_and_a_pool_is_refused_in_one_line(tmp_path: Path) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"Question {i}: what is {i} squared?"},
                {"role": "assistant", "content": str(i * i)},
            ]
        }
        for i in range(8)
    ]
    path = write(tmp_path / "q.jsonl", rows)
    _, found = located(path)
    assert found.matched == 0
    for overrides in (["wordings=rules"], ["baseline=common_it"]):
        cfg = compose_train(["dataset=jsonl", f"dataset.path={path}", *overrides])
        with pytest.raises(DeliaError) as refused:
            check_rows(cfg)
        message = str(refused.value)
        assert "\n" not in message and "0 of 8 rows matched" in message
        assert "dataset.instruction.sentence=" in message and "dataset.instruction.pattern=" in message
    check_rows(compose_train(["dataset=jsonl", f"dataset.path={path}"]))  # the rows as they are: runs


def test_a_sentence_inside_a_longer_word_is_not_the_instruction() -> None:
    assert split_known("Answering is fun.", "Answer") is None
    inside = split_known("Data A.\n\nAnswer in <sep>.\n\nData B.", "Answer in <sep>.")
    assert inside is not None and not inside.movable
    assert (
        inside.render(Wording("Reply in <sep>.", "rules", "before"))
        == "Data A.\n\nReply in <sep>.\n\nData B."
    )
