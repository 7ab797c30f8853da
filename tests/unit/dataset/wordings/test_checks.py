"""The wording options refused before any work, each in one line naming the option and the fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from delia.config import validate
from delia.infra.errors import DeliaError
from tests.conftest import TINY, compose_train
from tests.unit.dataset.wordings.chat_files import authors_chat_file


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["wordings.sources=[one,rules,one]"], r"^wordings\.sources=\[one,rules,one\] lists a source twice"),
        (["wordings.sources=[one,file]"], r"^wordings\.sources lists file but wordings\.file is not set"),
        (
            ["wordings.sources=[one,file]", "wordings.file=/nowhere.txt"],
            r"^wordings\.file=/nowhere\.txt: file not found",
        ),
        (
            ["wordings=paraphrase", "wordings.paraphrase.prompt='Rewrite it.'"],
            r"^wordings\.paraphrase\.prompt has no \{instruction\}",
        ),
        (
            ["+wordings.paraphrase.model.source=nowhere"],
            r"^wordings\.paraphrase\.model\.source='nowhere' is unknown",
        ),
        (["wordings.sources=[one,sparkle]"], r"^wordings\.sources\.1='sparkle'"),
        (
            ["dataset=wmt21_is_en", "dataset.path=pairs.jsonl", "wordings=rules"],
            r"^wordings\.sources=\[one,rules\] applies to dataset=jsonl and dataset=sep_format",
        ),
    ],
)
def test_bad_wording_options_are_one_line(overrides: list[str], message: str) -> None:
    with pytest.raises(DeliaError, match=message) as refused:
        validate(compose_train([*TINY, *overrides]))
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            ["dataset.instruction.pattern='(?P<data>.*'"],
            r"^dataset\.instruction\.pattern=.*: not a regular expression",
        ),
        (
            ["dataset.instruction.pattern='(?P<data>.*)'"],
            r"^dataset\.instruction\.pattern=.* has no group named instruction",
        ),
        (
            ["dataset.instruction.sentence=Go.", "dataset.instruction.column=task"],
            r"^dataset\.instruction\.column and dataset\.instruction\.sentence are both set",
        ),
    ],
)
def test_bad_instruction_options_are_one_line(tmp_path: Path, overrides: list[str], message: str) -> None:
    data = authors_chat_file(tmp_path / "d.jsonl")
    with pytest.raises(DeliaError, match=message):
        validate(compose_train([*TINY, "dataset=jsonl", f"dataset.path={data}", *overrides]))


def test_a_chat_dataset_with_a_pool_validates_and_the_default_reads_no_rows(tmp_path: Path) -> None:
    data = authors_chat_file(tmp_path / "d.jsonl")
    for method in ("delia", "delia_no_task_diversification", "common_it"):
        validate(
            compose_train(
                [*TINY, "dataset=jsonl", f"dataset.path={data}", "wordings=rules", f"method={method}"]
            )
        )
    validate(compose_train([*TINY, "dataset=jsonl", "dataset.path=not_read.jsonl"]))  # rows as they are
