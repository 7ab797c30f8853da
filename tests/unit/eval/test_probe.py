"""The general-knowledge probe: the built-in questions, answer matching, accuracy and bad files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from delia.eval.probe import ProbeItem, is_correct, load_probe, probe_accuracy, probe_messages
from delia.infra.errors import DeliaError

GOOD = {"id": "q1", "question": "What is the capital of France?", "answers": ["Paris"]}


def write_lines(path: Path, lines: list[object]) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_builtin_probe_loads_with_unique_ids_and_answers() -> None:
    items = load_probe()
    assert len(items) >= 50
    assert len({item.id for item in items}) == len(items)
    assert all(item.question.strip() and item.answers for item in items)
    assert all(answer.strip() for item in items for answer in item.answers)
    assert load_probe("builtin") == items


def test_builtin_answers_match_themselves_and_not_other_questions_answers() -> None:
    items = load_probe()
    assert all(is_correct(item.answers[0], item.answers) for item in items)
    # A reply that repeats the question does not already contain the answer.
    assert not any(is_correct(item.question, item.answers) for item in items)


def test_probe_messages_is_one_user_turn_asking_for_a_short_answer() -> None:
    item = ProbeItem(id="q", question="What is 2 plus 2?", answers=("4", "four"))
    assert probe_messages(item) == [
        {"role": "user", "content": "Answer with a few words only. What is 2 plus 2?"}
    ]


@pytest.mark.parametrize(
    ("reply", "answers"),
    [
        ("Paris", ["Paris"]),
        ("Paris.", ["Paris"]),
        ("The capital is Paris!", ["Paris"]),
        ("PARIS", ["paris"]),
        ("It was painted by Leonardo da Vinci.", ["Leonardo da Vinci", "da Vinci"]),
        ("da   Vinci", ["Leonardo da Vinci", "da Vinci"]),
        ("Pacific", ["The Pacific Ocean", "Pacific"]),
        ("the Pacific Ocean", ["Pacific Ocean"]),
        ("A week has seven days.", ["7", "seven"]),
        ("There are 7.", ["7", "seven"]),
        ("fifty-six", ["56", "fifty six"]),
        ("São Paulo", ["Sao Paulo"]),
        ("H₂O", ["H2O"]),
        ("About 1,000 metres", ["1000"]),
        ("It is 3.14", ["3.14"]),
        ("William Shakespeare's play", ["Shakespeare"]),
        ("“Canberra”", ["Canberra"]),
    ],
)
def test_is_correct_accepts(reply: str, answers: list[str]) -> None:
    assert is_correct(reply, answers)


@pytest.mark.parametrize(
    ("reply", "answers"),
    [
        ("Parisian", ["Paris"]),
        ("The capital is Lyon.", ["Paris"]),
        ("17", ["7", "seven"]),
        ("seventeen", ["7", "seven"]),
        ("7th", ["7"]),
        ("3.7", ["7"]),
        ("Vinci", ["Leonardo da Vinci"]),
        ("", ["Paris"]),
        ("the", ["the"]),
    ],
)
def test_is_correct_rejects(reply: str, answers: list[str]) -> None:
    assert not is_correct(reply, answers)


def test_probe_accuracy_counts_correct_replies() -> None:
    items = [
        ProbeItem("a", "Capital of France?", ("Paris",)),
        ProbeItem("b", "2 plus 2?", ("4", "four")),
        ProbeItem("c", "Red planet?", ("Mars",)),
        ProbeItem("d", "Days in a week?", ("7", "seven")),
    ]
    replies = ["Paris.", "It is four.", "Jupiter", "17"]
    assert probe_accuracy(replies, items) == 0.5
    assert math.isnan(probe_accuracy([], []))
    with pytest.raises(ValueError, match="3 replies for 4"):
        probe_accuracy(replies[:3], items)


def test_load_probe_from_a_file(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "p.jsonl", [GOOD, "", {**GOOD, "id": "q2", "answers": ["7", "seven"]}])
    items = load_probe(str(path))
    assert [item.id for item in items] == ["q1", "q2"]
    assert items[1].answers == ("7", "seven")


@pytest.mark.parametrize(
    ("bad", "location"),
    [
        ({"question": "Q?", "answers": ["Ans"]}, ":2 field 'id'"),
        ({"id": "q2", "answers": ["Ans"]}, ":2 field 'question'"),
        ({"id": "q2", "question": "  ", "answers": ["Ans"]}, ":2 field 'question'"),
        ({"id": "q2", "question": "Q?"}, ":2 field 'answers'"),
        ({"id": "q2", "question": "Q?", "answers": "Ans"}, ":2 field 'answers'"),
        ({"id": "q2", "question": "Q?", "answers": []}, ":2 field 'answers'"),
        ({"id": "q2", "question": "Q?", "answers": ["Ans", 7]}, ":2 field 'answers[1]': expected a string"),
        ({"id": "q2", "question": "Q?", "answers": ["The"]}, ":2 field 'answers[0]': 'The' has no words"),
        ({"id": "q1", "question": "Q?", "answers": ["Ans"]}, ":2 field 'id'"),
        ("{not json", ":2: not valid JSON"),
        ('["a list"]', ":2: a JSON list"),
    ],
)
def test_bad_lines_name_file_line_and_field(tmp_path: Path, bad: object, location: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, bad])
    with pytest.raises(DeliaError) as info:
        load_probe(str(path))
    message = str(info.value)
    assert f"{path}{location}" in message
    assert "\n" not in message


def test_missing_or_empty_probe_file(tmp_path: Path) -> None:
    with pytest.raises(DeliaError, match="file not found"):
        load_probe(str(tmp_path / "missing.jsonl"))
    with pytest.raises(DeliaError, match="is a directory"):
        load_probe(str(tmp_path))
    with pytest.raises(DeliaError, match="no questions"):
        load_probe(str(write_lines(tmp_path / "empty.jsonl", [""])))
