"""Every metric of the formatted-text task and of the representation analysis on hand-made outputs."""

from __future__ import annotations

import math

import pytest
import torch

from delia.eval.formats import (
    SEP_FORMAT,
    Regex,
    format_scores,
    formatted_label,
    negative_control,
    parse_reply,
)
from delia.eval.representation import layer_distances

GOOD_NO = "{'thought': 'the response matches the reference', 'hallucination': 'no'}"
GOOD_YES = '{"thought": "the date is wrong", "hallucination": "yes"}'


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        (GOOD_NO, "no"),
        (GOOD_YES, "yes"),
        ("```json\n" + GOOD_YES + "\n```", "yes"),  # a code fence is allowed
        ("{'thought': 'x', 'hallucination': ' YES '}", "yes"),  # case and spaces of the label
        ("Sure! " + GOOD_NO, None),  # text around the object
        ("{'thought': 'x'}", None),  # a key missing
        ("{'thought': 'x', 'hallucination': 'no', 'score': 1}", None),  # an extra key
        ("{'thought': 'x', 'hallucination': 'maybe'}", None),  # a label outside yes/no
        ("{'thought': 3, 'hallucination': 'no'}", None),  # a thought that is not text
        ("{'thought': 'x', 'hallucination': 'no'", None),  # not closed
        ("[1, 2]", None),
        ("", None),
    ],
)
def test_formatted_label(reply: str, label: str | None) -> None:
    assert formatted_label(reply) == label


def test_parse_reply_reads_json_and_python_literals() -> None:
    assert parse_reply(GOOD_YES) == {"thought": "the date is wrong", "hallucination": "yes"}
    assert parse_reply(GOOD_NO)["hallucination"] == "no"
    assert parse_reply("{not a dict}") is None


def test_format_and_label_accuracy_by_hand() -> None:
    replies = [GOOD_NO, GOOD_YES, GOOD_NO, "no idea", GOOD_YES]
    gold = ["no", "no", "no", "yes", "yes"]
    # 4 of 5 parse; of those, 3 have the gold label (reply 2 says yes for a no)
    scores = format_scores(replies, gold)
    assert (
        scores["format_acc"] == 0.8 and scores["label_acc"] == 0.6 and scores["label_acc_parseable"] == 0.75
    )
    assert scores["label_n"] == 4.0 and scores["n"] == 5.0 and scores["format_begins"] == 0.8


CUT_OPEN = "{'thought': 'the response says the tower is 300 m tall while the reference says"  # cut here


def test_a_reply_cut_at_the_budget_begins_the_format_but_is_not_complete() -> None:
    replies = [GOOD_NO, CUT_OPEN, "The response is fine.", GOOD_YES]
    scores = format_scores(replies, ["no", "no", "yes", "yes"], cut=[False, True, False, False])
    assert scores["format_begins"] == 0.75  # the cut reply opened the dict
    assert scores["format_acc"] == 0.5 and scores["cut"] == 0.25
    assert scores["format_acc_uncut"] == pytest.approx(2 / 3)  # the cut reply is not counted as failing
    assert scores["label_n"] == 2.0 and scores["label_acc_parseable"] == 1.0


@pytest.mark.parametrize(
    ("reply", "begins"),
    [
        (CUT_OPEN, True),
        ('```json\n{"hallucination": "n', True),  # a fence, then the label key first
        ("{'answer': 'no'}", False),  # a dict, but not with a required key
        ("{not a dict", False),
        ("I think {'thought': 'x'}", False),  # the format is not how the reply begins
        ("", False),
    ],
)
def test_begins_the_format(reply: str, begins: bool) -> None:
    assert SEP_FORMAT.begins(reply) == begins


def test_a_regex_format_begins_where_the_reply_is_a_prefix_of_a_match() -> None:
    import re

    fmt = Regex(re.compile(r"Answer: (?P<label>yes|no)\. Because .+", re.DOTALL))
    assert fmt.begins("Answer: ye") and fmt.begins("Answer: no. Because the date")
    assert not fmt.begins("The answer is yes") and fmt.label("Answer: no. Because x") == "no"


def test_scores_of_nothing_are_nan_not_zero() -> None:
    scores = format_scores([], [])
    assert math.isnan(scores["format_acc"]) and math.isnan(scores["label_acc"])
    assert math.isnan(format_scores(["x"], ["no"])["label_acc_parseable"])
    assert math.isnan(negative_control([])["format_rate"])


def test_the_negative_control_counts_a_reply_that_begins_the_format_as_using_it() -> None:
    """A reply cut after opening the dict did not obey "do NOT use the format"."""
    replies = [GOOD_NO, "The response is fine.", CUT_OPEN, "no"]
    rates = negative_control(replies, cut=[False, False, True, False])
    assert rates["format_rate"] == 0.5 and rates["complete_rate"] == 0.25 and rates["cut"] == 0.25


def test_layer_distances_by_hand() -> None:
    source = {1: torch.tensor([3.0, 4.0]), 2: torch.tensor([1.0, 0.0])}
    target = {1: torch.tensor([0.0, 0.0]), 2: torch.tensor([0.0, 2.0])}
    out = layer_distances(source, target)
    assert out["repr/l2_layer1"] == pytest.approx(5.0)
    assert out["repr/l2_layer2"] == pytest.approx(math.sqrt(5.0))
    assert out["repr/cos_layer2"] == pytest.approx(1.0)  # orthogonal: cosine similarity 0
    same = layer_distances({3: torch.tensor([1.0, 2.0])}, {3: torch.tensor([2.0, 4.0])})
    assert same["repr/cos_layer3"] == pytest.approx(0.0, abs=1e-7)  # parallel: distance 0
    assert same["repr/l2_layer3"] == pytest.approx(math.sqrt(5.0))
