"""The paper's metrics on a user's own chat data: eval.format (json_keys or regex), split tags for the
unseen-wording and negative-control examples, on a file written in the authors' layout."""

from __future__ import annotations

import re

from omegaconf import OmegaConf

from delia.eval.evaluate import gold_label
from delia.eval.formats import JsonKeys, Regex, reply_format

SEP = JsonKeys(frozenset({"thought", "hallucination"}), "hallucination", frozenset({"yes", "no"}))


def test_json_keys_and_regex_formats_read_the_label() -> None:
    assert SEP.label("{'thought': 'fine', 'hallucination': 'No'}") == "no"
    assert SEP.label('{"thought": "x", "hallucination": "maybe"}') is None
    assert SEP.label('{"thought": "x"}') is None
    no_label = JsonKeys(frozenset({"answer"}))
    assert no_label.label('{"answer": "42"}') == ""
    verdict = Regex(re.compile(r"Verdict: (?P<label>yes|no)\.?"))
    assert verdict.label("Verdict: yes.") == "yes" and verdict.label("I think yes") is None
    cfg = OmegaConf.create(
        {
            "format": "json_keys",
            "required_keys": ["thought", "hallucination"],
            "label_key": "hallucination",
            "label_values": ["yes", "no"],
        }
    )
    assert reply_format(cfg) == SEP


def test_the_gold_label_is_read_from_the_reference_reply() -> None:
    record = {
        "messages": [
            {"role": "user", "content": "q"},
            {"role": "assistant", "content": "{'thought': 't', 'hallucination': 'yes'}"},
        ]
    }
    assert gold_label(record, SEP) == "yes"
    assert gold_label({"label": "no", "messages": []}, SEP) == "no"
