"""The pool applied to the splits: held-out wordings never trained and disjoint from the seen ones, the
same for every method; the eval rows as seen, unseen and negative splits; the <sep> task's pool on its
training wordings with its hand-written held-out split untouched; wordings=none changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from delia.baselines import prompted_task
from delia.dataset.wordings import apply_wordings
from delia.dataset.wordings import paraphrase as para
from delia.dataset.wordings.base import normalized
from delia.diverse.backend import Sampled
from delia.infra.errors import DeliaError
from tests.conftest import TINY, compose_train
from tests.unit.dataset.wordings.chat_files import INSTRUCTION, SEP_OPTIONS, authors_chat_file

NEGATIVE = "dataset.negative_instruction='Do NOT use the <sep> format.'"


def applied(*overrides: str, runtime=None):
    cfg = compose_train([*TINY, *overrides])
    splits = prompted_task(cfg)
    out, report = apply_wordings(cfg, splits, runtime)
    return splits, out, report


def chat(tmp_path: Path, *overrides: str, runtime=None):
    data = authors_chat_file(tmp_path / "d.jsonl")
    return applied(
        "dataset=jsonl",
        f"dataset.path={data}",
        "dataset.train_size=null",
        *SEP_OPTIONS,
        *overrides,
        runtime=runtime,
    )


def instructions(records) -> set[str]:
    return {normalized(r["instruction"]) for r in records}


def test_seen_and_unseen_wordings_are_disjoint_and_the_held_out_ones_are_never_trained(
    tmp_path: Path,
) -> None:
    before, out, report = chat(tmp_path, "wordings=rules", NEGATIVE)
    held = {normalized(w["text"]) for w in report.pool if w["share"] == "heldout"}
    assert held and len(held) == round(0.2 * len(report.pool))
    assert not instructions(out["train"]) & held
    assert instructions(out["unseen_wordings"]) == held
    assert not instructions(out["seen_wordings"]) & instructions(out["unseen_wordings"])
    assert instructions(out["seen_wordings"]) <= instructions(out["train"])
    # the fixed wording: a method without diversification trains on it
    assert normalized(INSTRUCTION) not in held
    assert out["eval"] == before["eval"]  # the rows' own wordings: eval/loss on the same probe as before
    n_eval = len(before["eval"])
    assert len(out["seen_wordings"]) == len(out["unseen_wordings"]) == len(out["negative"]) == n_eval
    assert all(
        len(r["messages"]) == 1 and "Do NOT use" in r["messages"][0]["content"] for r in out["negative"]
    )
    metrics = report.metrics
    assert metrics["wordings/rows_matched"] == metrics["wordings/rows"] == 40
    assert metrics["wordings/heldout_share"] == len(held)
    # no held-out wording nearly repeats a trained one
    assert 0 < metrics["wordings/heldout_max_overlap"] <= 0.8


def test_every_method_of_a_sweep_holds_out_the_same_wordings(tmp_path: Path) -> None:
    _, delia, _ = chat(tmp_path, "wordings=rules")
    _, ablation, report = chat(tmp_path, "wordings=rules", "method=delia_no_task_diversification")
    assert delia["unseen_wordings"] == ablation["unseen_wordings"]
    assert (
        instructions(ablation["train"])
        == instructions(ablation["seen_wordings"])
        == {normalized(INSTRUCTION)}
    )
    assert report.metrics["wordings/trained"] == 1 and len(instructions(delia["train"])) > 1


def test_the_data_part_of_every_row_is_untouched(tmp_path: Path) -> None:
    before, out, _ = chat(tmp_path, "wordings=rules")
    for old, new in zip(before["train"], out["train"], strict=True):
        data = old["messages"][0]["content"].replace(f"\n\n{INSTRUCTION}", "")
        assert data in new["messages"][0]["content"] and new["messages"][1:] == old["messages"][1:]


def test_wordings_none_leaves_every_split_as_it_was(tmp_path: Path) -> None:
    for overrides in ([], ["dataset=jsonl", f"dataset.path={authors_chat_file(tmp_path / 'd.jsonl')}"]):
        before, out, report = applied(*overrides)
        assert out == before and report is None


def test_the_sep_task_pools_its_training_wordings_and_keeps_its_held_out_and_negative_splits() -> None:
    before, out, report = applied("wordings=rules")
    assert out["unseen_wordings"] == before["unseen_wordings"] and out["negative"] == before["negative"]
    pooled = {normalized(w["text"]) for w in report.pool}
    assert instructions(out["train"]) <= pooled
    assert instructions(out["seen_wordings"]) <= instructions(out["train"])
    unseen = {normalized(r["instruction"]) for r in before["unseen_wordings"]}
    assert not pooled & unseen
    assert [r["fact_id"] for r in out["train"]] == [r["fact_id"] for r in before["train"]]


def test_one_wording_on_the_sep_task_trains_what_the_ablation_trains() -> None:
    _, one, report = applied("wordings=one")
    ablation = prompted_task(compose_train([*TINY, "method=delia_no_task_diversification"]))
    assert [r["messages"] for r in one["train"]] == [r["messages"] for r in ablation["train"]]
    assert report.metrics["wordings/kept"] == report.metrics["wordings/trained"] == 1


def test_a_wording_that_repeats_a_held_out_one_is_rejected(tmp_path: Path) -> None:
    from delia.dataset import sep_format

    heldout = sep_format.load_resources().heldout[0].text
    path = tmp_path / "w.txt"
    path.write_text(f"{heldout}\nState in the <sep> format whether the reply is grounded.\n")
    _, _, report = applied("wordings.sources=[one,file]", f"wordings.file={path}")
    assert report.metrics["wordings/rejected_reserved"] == 1 and report.metrics["wordings/kept_file"] == 1


def scripted(monkeypatch: pytest.MonkeyPatch, replies) -> None:
    """The paraphraser's backend replaced by one that gives ``replies`` in order."""

    class Scripted:
        def generate(self, prompts, seed):
            return [Sampled(next(replies), "stop") for _ in prompts]

        def close(self):
            pass

    monkeypatch.setattr(para, "make_sampler", lambda *args: Scripted())


def test_paraphrases_enter_the_pool_through_the_filters(
    tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    replies = iter(
        [
            "Instruction: Compare the reply with the reference, then answer in the <sep> format.",
            "Tell me if it is made up.",  # lacks <sep>
            "Using the <sep> format, say whether the chatbot's claim holds.",
        ]
    )

    scripted(monkeypatch, replies)
    model, tokenizer = tiny_model
    options = ["wordings=paraphrase", "wordings.paraphrase.n=3", "wordings.paraphrase.sampler=transformers"]
    runtime = para.Runtime(model, tokenizer, compose_train(TINY).model, tmp_path)
    _, out, report = chat(tmp_path, *options, runtime=runtime)
    assert report.metrics["wordings/kept_paraphrase"] == 2
    assert report.metrics["wordings/rejected_missing_required"] == 1
    paraphrased = {w["text"] for w in report.pool if w["source"] == "paraphrase"}
    assert paraphrased == {
        "Compare the reply with the reference, then answer in the <sep> format.",  # its label taken off
        "Using the <sep> format, say whether the chatbot's claim holds.",
    }
    assert instructions(out["train"]) & {normalized(text) for text in paraphrased}  # and are trained


def test_a_pool_left_without_a_wording_is_refused_in_one_line(
    tmp_path: Path, tiny_model, monkeypatch: pytest.MonkeyPatch
) -> None:
    scripted(monkeypatch, iter(["Tell me if it is made up."] * 3))  # none keeps <sep>
    model, tokenizer = tiny_model
    runtime = para.Runtime(model, tokenizer, compose_train(TINY).model, tmp_path)
    options = [
        "wordings.sources=[paraphrase]",
        "wordings.paraphrase.n=3",
        "wordings.paraphrase.sampler=transformers",
    ]
    with pytest.raises(
        DeliaError,
        match=r"^wordings\.sources=\[paraphrase\]: no wording passed the filters \(3 missing_required\)",
    ):
        chat(tmp_path, *options, runtime=runtime)
