"""Chat datasets: layouts, column mapping, and one-line errors on bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import DictConfig

from delia.dataset import chat
from delia.infra.errors import DeliaError
from tests.conftest import compose_train


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def dataset_cfg(tmp_path: Path, path: Path, *overrides: str) -> DictConfig:
    return compose_train(["dataset=jsonl", f"dataset.path={path}", *overrides], run_dir=tmp_path).dataset


CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def test_messages_layout_and_eval_split(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "d.jsonl", [CHAT] * 10)
    splits = chat.build_splits(dataset_cfg(tmp_path, path))
    assert len(splits["train"]) == 9 and len(splits["eval"]) == 1
    assert splits["train"][0]["messages"] == CHAT["messages"]
    assert splits["train"][0]["origin"].startswith(f"{path}:")


def test_prompt_response_and_instruction_layouts_with_column_mapping(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "pr.jsonl", [{"q": "2+2?", "a": "4"}, {"q": "3+3?", "a": "6"}])
    cfg = dataset_cfg(
        tmp_path,
        path,
        "dataset.format=prompt_response",
        "dataset.columns.prompt=q",
        "dataset.columns.response=a",
    )
    records = chat.load_records(str(path), cfg)
    assert records[1]["messages"] == [
        {"role": "user", "content": "3+3?"},
        {"role": "assistant", "content": "6"},
    ]
    path = write_lines(tmp_path / "alpaca.jsonl", [{"instruction": "Add", "input": "2 and 2", "output": "4"}])
    records = chat.load_records(str(path), dataset_cfg(tmp_path, path, "dataset.format=instruction"))
    assert records[0]["messages"][0]["content"] == "Add\n\n2 and 2"


def test_datasets_source_is_read_through_datasets(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("prompt,response\nhi,hello\nbye,ciao\n")
    records = chat.load_records(str(path), dataset_cfg(tmp_path, path, "dataset.format=prompt_response"))
    assert [r["messages"][1]["content"] for r in records] == ["hello", "ciao"]


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([CHAT, "{not json"], r"d\.jsonl:2: not valid JSON"),
        ([CHAT, "[1, 2]"], r"d\.jsonl:2: a JSON list, not an object"),
        ([{"text": "x"}], r"d\.jsonl:1 field 'messages': missing"),
        (
            [{"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}],
            r"field 'messages\[1\]\.role'",
        ),
        (
            [{"messages": [{"role": "user", "content": ""}, {"role": "assistant", "content": "a"}]}],
            r"field 'messages\[0\]'.*empty",
        ),
        ([{"messages": [{"role": "user", "content": "q"}]}], "last message must be the assistant"),
        ([], "the dataset is empty"),
    ],
)
def test_bad_records_give_one_line_errors(tmp_path: Path, lines: list[object], message: str) -> None:
    path = write_lines(tmp_path / "d.jsonl", lines)
    with pytest.raises(DeliaError, match=message) as err:
        chat.build_splits(dataset_cfg(tmp_path, path))
    assert "\n" not in str(err.value)


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(DeliaError, match="file not found"):
        chat.build_splits(dataset_cfg(tmp_path, tmp_path / "nope.jsonl"))
    bad = tmp_path / "latin1.jsonl"
    bad.write_bytes(b'{"messages": "caf\xe9"}\n')
    with pytest.raises(DeliaError, match=r"latin1\.jsonl:1: not UTF-8"):
        chat.build_splits(dataset_cfg(tmp_path, bad))
