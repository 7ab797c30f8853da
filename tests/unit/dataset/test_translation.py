"""The Icelandic-English translation task: local loading, splits, wordings, DiPMT hints, metrics."""

from __future__ import annotations

import json
import math
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from omegaconf import DictConfig, OmegaConf

from delia.baselines import dipmt
from delia.dataset import translation as tr
from delia.eval import translation_metrics as tm
from delia.infra.errors import DeliaError
from tests.conftest import REPO

CONF = REPO / "conf" / "dataset"

# Invented Icelandic-English pairs; "hundur"/"dog", "köttur"/"cat", ... repeat so a dictionary can be learned.
SAMPLE = [
    ("Þetta er hundur.", "This is a dog."),
    ("Gamall hundur sefur.", "An old dog sleeps."),
    ("Hundur og köttur leika sér.", "A dog and a cat play."),
    ("Lítill hundur geltir.", "A small dog barks."),
    ("Svartur hundur hleypur hratt.", "A black dog runs fast."),
    ("Köttur situr á borðinu.", "A cat sits on the table."),
    ("Hvítur köttur drekkur mjólk.", "A white cat drinks milk."),
    ("Köttur sefur í húsinu.", "A cat sleeps in the house."),
    ("Maðurinn les bók.", "The man reads a book."),
    ("Konan les bók.", "The woman reads a book."),
    ("Barnið les bók í dag.", "The child reads a book today."),
    ("Bókin er á borðinu.", "The book is on the table."),
    ("Húsið er stórt.", "The house is big."),
    ("Húsið er rautt.", "The house is red."),
    ("Við búum í litlu húsi.", "We live in a small house."),
    ("Veðrið er gott í dag.", "The weather is good today."),
    ("Veðrið er kalt í dag.", "The weather is cold today."),
    ("Veðrið var slæmt í gær.", "The weather was bad yesterday."),
    ("Borgin er falleg.", "The city is beautiful."),
    ("Borgin er stór.", "The city is big."),
    ("Maðurinn býr í borginni.", "The man lives in the city."),
    ("Konan býr í borginni.", "The woman lives in the city."),
    ("Barnið drekkur vatn.", "The child drinks water."),
    ("Maðurinn drekkur vatn.", "The man drinks water."),
    ("Vatnið er kalt.", "The water is cold."),
    ("Hesturinn hleypur hratt.", "The horse runs fast."),
    ("Hesturinn er svartur.", "The horse is black."),
    ("Hesturinn borðar gras.", "The horse eats grass."),
    ("Konan á hest.", "The woman owns a horse."),
    ("Barnið sér hestinn.", "The child sees the horse."),
    ("Jökullinn er hvítur.", "The glacier is white."),
    ("Eldfjallið gýs.", "The volcano erupts."),
    ("Ég fer til Reykjavíkur á morgun.", "I am going to Reykjavik tomorrow."),
    ("Skipið siglir á sjónum.", "The ship sails on the sea."),
    ("Fiskurinn syndir í sjónum.", "The fish swims in the sea."),
    ("Maðurinn veiðir fisk.", "The man catches fish."),
    ("Konan eldar fisk.", "The woman cooks fish."),
    ("Barnið sefur.", "The child sleeps."),
    ("Við borðum fisk í dag.", "We eat fish today."),
    ("Það rignir í borginni.", "It rains in the city."),
]


def config(name: str = "wmt21_is_en", **overrides: Any) -> DictConfig:
    """The shipped dataset config with ``overrides`` (sizes small enough for the sample)."""
    cfg = OmegaConf.load(CONF / f"{name}.yaml")
    return OmegaConf.merge(cfg, {"train_size": 24, "eval_size": 8, **overrides})  # type: ignore[return-value]


def write_jsonl(path: Path, pairs: list[tuple[str, str]] = SAMPLE) -> Path:
    """Half the lines flat, half with a ``translation`` dict: both layouts are accepted."""
    lines = [
        json.dumps({"is": s, "en": t} if i % 2 else {"translation": {"en": t, "is": s}}, ensure_ascii=False)
        for i, (s, t) in enumerate(pairs)
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_tsv(path: Path, pairs: list[tuple[str, str]] = SAMPLE, header: str | None = "is\ten") -> Path:
    lines = ([header] if header else []) + [f"{s}\t{t}" for s, t in pairs]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def sample_jsonl(tmp_path: Path) -> Path:
    return write_jsonl(tmp_path / "is_en.jsonl")


def sources(records: list[dict[str, Any]]) -> list[str]:
    return [r["source_text"] for r in records]


# ---------------------------------------------------------------------------------------------- resources


def test_wordings_resource() -> None:
    wordings = tr.load_wordings()
    train = {w.text for w in wordings.train}
    heldout = {w.text for w in wordings.heldout}
    assert len(train) >= 20 and len(heldout) >= 8 and not train & heldout
    for instruction in (*wordings.train, *wordings.heldout, wordings.fixed):
        assert "{tgt}" in instruction.text and instruction.position in ("before", "after")
    for field in ("position", "register", "length"):
        assert len({getattr(w, field) for w in wordings.train}) >= 2, field
        assert len({getattr(w, field) for w in wordings.heldout}) >= 2, field


def test_language_name() -> None:
    assert tr.language_name("is") == "Icelandic" and tr.language_name("en") == "English"
    assert tr.language_name("xx") == "xx"


# ---------------------------------------------------------------------------------------------- loading


def test_jsonl_and_tsv_load_the_same_pairs(tmp_path: Path, sample_jsonl: Path) -> None:
    tsv = write_tsv(tmp_path / "is_en.tsv")
    no_header = write_tsv(tmp_path / "plain.tsv", header=None)
    expected = [(s, t) for s, t in SAMPLE]
    for path in (sample_jsonl, tsv, no_header):
        assert [(p.source, p.target) for p in tr.read_pairs(path, "is", "en")] == expected
    from_jsonl = tr.build_splits(config(path=str(sample_jsonl)))
    from_tsv = tr.build_splits(config(path=str(tsv)))
    for split in ("train", "eval"):
        assert [(r["source_text"], r["reference"]) for r in from_jsonl[split]] == [
            (r["source_text"], r["reference"]) for r in from_tsv[split]
        ]


def test_eval_is_disjoint_seeded_and_sized(sample_jsonl: Path) -> None:
    cfg = config(path=str(sample_jsonl))
    splits = tr.build_splits(cfg)
    assert len(splits["train"]) == 24 and len(splits["eval"]) == 8
    assert not set(sources(splits["train"])) & set(sources(splits["eval"]))
    assert tr.build_splits(cfg) == splits
    other = tr.build_splits(config(path=str(sample_jsonl), seed=7))
    assert sources(other["eval"]) != sources(splits["eval"])
    everything = tr.build_splits(config(path=str(sample_jsonl), train_size=None))
    assert len(everything["train"]) == len(SAMPLE) - 8


def test_separate_eval_file_is_used_and_left_out_of_training(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", SAMPLE)
    evaluation = write_tsv(tmp_path / "eval.tsv", SAMPLE[:5])
    splits = tr.build_splits(config(path=str(train), eval_path=str(evaluation), train_size=None, eval_size=5))
    assert sorted(sources(splits["eval"])) == sorted(s for s, _ in SAMPLE[:5])
    assert len(splits["train"]) == len(SAMPLE) - 5
    assert not set(sources(splits["train"])) & set(sources(splits["eval"]))


def test_records_end_with_the_assistant_target(sample_jsonl: Path) -> None:
    splits = tr.build_splits(config(path=str(sample_jsonl)))
    for split, records in splits.items():
        for index, record in enumerate(records):
            user, assistant = record["messages"]
            assert user["role"] == "user" and record["source_text"] in user["content"]
            assert assistant == {"role": "assistant", "content": record["reference"]}
            assert record["split"] == split and record["origin"] == f"translation/{split}/{index}"
            assert record["source_origin"].startswith(str(sample_jsonl))


def test_diversified_and_fixed_wordings(sample_jsonl: Path) -> None:
    wordings = tr.load_wordings()
    rendered = {tr.render_instruction(w, "is", "en") for w in wordings.train}
    heldout = {tr.render_instruction(w, "is", "en") for w in wordings.heldout}
    diverse = tr.build_splits(config(path=str(sample_jsonl)))
    train_texts = [r["instruction"] for r in diverse["train"]]
    assert len(set(train_texts)) >= 20 and set(train_texts) <= rendered
    contents = [r["messages"][0]["content"] for r in diverse["train"]]
    assert any(c.startswith(r["instruction"]) for c, r in zip(contents, diverse["train"], strict=True))
    assert any(c.endswith(r["instruction"]) for c, r in zip(contents, diverse["train"], strict=True))
    fixed = tr.build_splits(config(path=str(sample_jsonl), diversify_instructions=False))
    assert {r["instruction"] for r in fixed["train"]} == {
        "Translate the following Icelandic text into English."
    }
    for splits in (diverse, fixed):
        assert {r["instruction"] for r in splits["eval"]} <= heldout
        assert len({r["instruction"] for r in splits["eval"]}) == 8
    assert "{src}" not in "".join(train_texts) and "{tgt}" not in "".join(train_texts)


def test_en_is_direction_swaps(tmp_path: Path, sample_jsonl: Path) -> None:
    is_en = tr.build_splits(config(path=str(sample_jsonl)))
    en_is = tr.build_splits(config("wmt21_en_is", path=str(sample_jsonl), diversify_instructions=False))
    english = {t for _, t in SAMPLE}
    icelandic = {s for s, _ in SAMPLE}
    assert set(sources(en_is["train"])) <= english and {r["reference"] for r in en_is["train"]} <= icelandic
    assert set(sources(is_en["train"])) <= icelandic
    assert en_is["train"][0]["instruction"] == "Translate the following English text into Icelandic."
    tsv = write_tsv(tmp_path / "en_is.tsv", [(t, s) for s, t in SAMPLE], header="en\tis")
    assert tr.read_pairs(tsv, "en", "is")[0].source == "This is a dog."


# ---------------------------------------------------------------------------------------------- bad input


def _bad(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


BAD_INPUT = [
    ("missing.jsonl", b'{"is": "Hallo."}\n{"is": "Bless.", "xx": "Bye."}\n', ":1 field 'en'", "missing"),
    (
        "nested.jsonl",
        b'{"translation": {"is": "Hall\xc3\xb3.", "en": "  "}}\n',
        ":1 field 'translation.en'",
        "empty",
    ),
    ("empty.jsonl", b'{"is": "Hallo.", "en": "Hello."}\n{"is": "", "en": "Hi."}\n', ":2 field 'is'", "empty"),
    ("columns.tsv", b"is\ten\nHall\xc3\xb3.\tHello.\nBless.\n", ":3", "1 tab-separated columns"),
    ("three.tsv", b"a\tb\tc\n", ":1", "3 tab-separated columns"),
    ("latin1.tsv", b"Hall\xf3.\tHello.\n", ":1", "not UTF-8"),
    ("latin1.jsonl", b'{"is": "Hall\xf3.", "en": "Hello."}\n', ":1", "not UTF-8"),
    ("broken.jsonl", b'{"is": "Hall\n', ":1", "not valid JSON"),
    ("reversed.tsv", b"en\tis\nHello.\tHall\xc3\xb3.\n", ":1", "reverse"),
    ("blank.tsv", b"\n\n", "", "no sentence pairs"),
    ("data.csv", b"is,en\n", "", "unknown file type"),
]


@pytest.mark.parametrize(("name", "content", "location", "problem"), BAD_INPUT)
def test_bad_local_input_is_one_line(
    tmp_path: Path, name: str, content: bytes, location: str, problem: str
) -> None:
    path = _bad(tmp_path, name, content)
    with pytest.raises(DeliaError) as err:
        tr.build_splits(config(path=str(path)))
    message = str(err.value)
    assert "\n" not in message and f"{path}{location}" in message and problem in message


def test_missing_file_and_directory(tmp_path: Path, sample_jsonl: Path) -> None:
    with pytest.raises(DeliaError, match=r"nope\.jsonl: file not found; check dataset\.path"):
        tr.build_splits(config(path=str(tmp_path / "nope.jsonl")))
    with pytest.raises(DeliaError, match=r"is a directory; point dataset\.eval_path"):
        tr.build_splits(config(path=str(sample_jsonl), eval_path=str(tmp_path)))


@pytest.mark.parametrize(("option", "value"), [("train_size", 100), ("eval_size", 40), ("train_size", -1)])
def test_sizes_beyond_the_data_name_the_option(sample_jsonl: Path, option: str, value: int) -> None:
    with pytest.raises(DeliaError, match=rf"dataset\.{option}={value}"):
        tr.build_splits(config(path=str(sample_jsonl), **{option: value}))


def test_same_language_twice_is_refused(sample_jsonl: Path) -> None:
    with pytest.raises(DeliaError, match="two different language codes"):
        tr.build_splits(config(path=str(sample_jsonl), target_lang="is"))


# ---------------------------------------------------------------------------------------------- hub


def test_unreachable_hub_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    def offline(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError(
            "Couldn't reach 'haoranxu/WMT22-Test' on the Hub (LocalEntryNotFoundError)\nmore"
        )

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DeliaError) as err:
        tr.build_splits(config())
    message = str(err.value)
    assert (
        "\n" not in message
        and "unreachable" in message
        and "dataset.path=<local .jsonl/.tsv file>" in message
    )
    assert "dataset.hub_path=haoranxu/WMT22-Test" in message


@pytest.mark.parametrize("layout", ["pair_column", "translation"])
def test_hub_rows_are_read(monkeypatch: pytest.MonkeyPatch, layout: str) -> None:
    import datasets

    calls = []

    def fake(path: str, name: str, split: str) -> list[dict[str, Any]]:
        calls.append((path, name, split))
        key = "is-en" if layout == "pair_column" else "translation"
        return [{key: {"is": s, "en": t}} for s, t in SAMPLE]

    monkeypatch.setattr(datasets, "load_dataset", fake)
    splits = tr.build_splits(config())
    assert calls == [("haoranxu/WMT22-Test", "is-en", "test")]
    assert len(splits["train"]) == 24 and set(sources(splits["train"])) <= {s for s, _ in SAMPLE}
    assert splits["train"][0]["source_origin"].startswith("haoranxu/WMT22-Test[")


# ---------------------------------------------------------------------------------------------- DiPMT


def test_build_dictionary_learns_word_pairs() -> None:
    dictionary = dipmt.build_dictionary(SAMPLE)
    assert dictionary["hundur"][0] == "dog"
    assert dictionary["köttur"][0] == "cat"
    assert dictionary["veðrið"][0] == "weather"
    assert all(1 <= len(found) <= 2 for found in dictionary.values())
    assert dictionary["reykjavíkur"] == ["reykjavik"] and dictionary["jökullinn"] == ["glacier"]
    # "hundur" is linked to "dog" 3 times (score 2*3/(5+3) = 0.75) and to "hound" twice (2*2/(5+2) = 0.57)
    varied = [
        ("hundur geltir", "dog barks"),
        ("hundur sefur", "dog sleeps"),
        ("hundur syndir", "dog swims"),
        ("hundur borðar", "hound eats"),
        ("hundur hleypur", "hound runs"),
    ]
    assert dipmt.build_dictionary(varied)["hundur"] == ["dog", "hound"]
    assert dipmt.build_dictionary(varied, max_translations=1)["hundur"] == ["dog"]
    assert dipmt.build_dictionary(varied, min_score=0.6)["hundur"] == ["dog"]
    assert dipmt.build_dictionary(varied)["geltir"] == ["barks"]


def test_words_and_rare_words() -> None:
    assert dipmt.words("Hundur, og KÖTTUR! 3 sinnum.") == ["hundur", "og", "köttur", "sinnum"]
    counts = dipmt.word_counts(s for s, _ in SAMPLE)
    assert counts["hundur"] == 5 and counts["jökullinn"] == 1
    assert dipmt.rare_words("Hundur sér jökullinn og jökullinn.", counts, 2) == ["sér", "jökullinn", "og"]


def test_dictionary_hints_only_for_rare_words() -> None:
    dictionary = {"hundur": ["dog"], "jökullinn": ["glacier", "ice cap"], "gýs": ["erupts"]}
    counts = {"hundur": 5, "jökullinn": 1, "gýs": 2}
    hints = dipmt.dictionary_hints("Hundur sér jökullinn. Eldfjallið gýs.", dictionary, counts, 2, 8)
    assert hints.splitlines() == [
        'In this context, the word "jökullinn" means "glacier" or "ice cap".',
        'In this context, the word "gýs" means "erupts".',
    ]
    assert (
        dipmt.dictionary_hints("Hundur sér jökullinn. Eldfjallið gýs.", dictionary, counts, 2, 1).count("\n")
        == 0
    )
    assert dipmt.dictionary_hints("Hundur geltir.", dictionary, counts, 2, 8) == ""


def test_read_dictionary(tmp_path: Path) -> None:
    path = tmp_path / "dict.tsv"
    path.write_text("Hundur\tdog\nhundur\thound\nhundur\tdog\n\njökull\tglacier\n", encoding="utf-8")
    assert dipmt.read_dictionary(path) == {"hundur": ["dog", "hound"], "jökull": ["glacier"]}
    path.write_text("hundur\tdog\nköttur\n", encoding="utf-8")
    with pytest.raises(DeliaError, match=r"dict\.tsv:2: 1 tab-separated columns, expected 2"):
        dipmt.read_dictionary(path)
    path.write_text("hundur\t \n", encoding="utf-8")
    with pytest.raises(DeliaError, match=r"dict\.tsv:1 field 'translation': empty"):
        dipmt.read_dictionary(path)
    with pytest.raises(DeliaError, match=r"file not found; check dataset\.dictionary_path"):
        dipmt.read_dictionary(tmp_path / "none.tsv")


def test_build_splits_with_dictionary_hints(tmp_path: Path, sample_jsonl: Path) -> None:
    dictionary = tmp_path / "dict.tsv"
    dictionary.write_text("hundur\tdog\njökullinn\tglacier\neldfjallið\tvolcano\n", encoding="utf-8")
    cfg = config(path=str(sample_jsonl), dictionary_path=str(dictionary), train_size=None)
    plain = tr.build_splits(cfg)
    hinted = dipmt.with_dictionary_hints(tr.build_splits(cfg), cfg)
    assert sources(plain["train"]) == sources(hinted["train"])
    eval_sources = set(sources(hinted["eval"]))
    counts = dipmt.word_counts(s for s, _ in SAMPLE if s not in eval_sources)
    assert counts["hundur"] > cfg.rare_max_count  # precondition: "hundur" is frequent in training
    seen = []
    for record in (*hinted["train"], *hinted["eval"]):
        content = record["messages"][0]["content"]
        assert 'the word "hundur"' not in content
        for word, meaning in (("jökullinn", "glacier"), ("eldfjallið", "volcano")):
            if word in record["source_text"].lower():
                assert content.endswith(f'In this context, the word "{word}" means "{meaning}".')
                seen.append(word)
    assert sorted(seen) == ["eldfjallið", "jökullinn"]
    learned_cfg = config(path=str(sample_jsonl), rare_max_count=1)
    learned = dipmt.with_dictionary_hints(tr.build_splits(learned_cfg), learned_cfg)
    assert any("In this context, the word" in r["messages"][0]["content"] for r in learned["train"])


# ---------------------------------------------------------------------------------------------- metrics


def test_identical_outputs_score_100_and_disjoint_outputs_0() -> None:
    refs = ["The dog sleeps in the old house.", "The weather is cold today in the city."]
    assert tm.chrf(refs, refs) == pytest.approx(100.0)
    assert tm.bleu(refs, refs) == pytest.approx(100.0)
    disjoint = ["xyz qvw", "jjj kkk"]
    assert tm.chrf(disjoint, ["abc", "def"]) == 0.0
    assert tm.bleu(["one two three four five"], ["six seven eight nine ten"]) == 0.0


def test_bleu_against_a_hand_computation() -> None:
    # hyp "the cat sat on the mat today" vs ref "the cat sat on the mat": matched n-grams 6/7, 5/6, 4/5, 3/4,
    # the hypothesis is longer (BP = 1): BLEU = (6/7 * 5/6 * 4/5 * 3/4) ** (1/4) = (3/7) ** 0.25 = 0.80911
    assert tm.bleu(["the cat sat on the mat today"], ["the cat sat on the mat"]) == pytest.approx(
        100 * (3 / 7) ** 0.25, abs=1e-6
    )
    # swapped: every precision is 1, the hypothesis is short: BP = exp(1 - 7/6)
    assert tm.bleu(["the cat sat on the mat"], ["the cat sat on the mat today"]) == pytest.approx(
        100 * math.exp(1 - 7 / 6), abs=1e-6
    )


def test_chrf_against_a_hand_computation() -> None:
    # hyp "abc", ref "abd": 1-grams 2/3 match (P = R = 2/3), 2-grams {ab,bc} vs {ab,bd} 1/2, 3-grams 0/1;
    # no 4-6-grams (those orders do not count). avg P = avg R = (2/3 + 1/2 + 0) / 3 = 7/18, and
    # F_beta = (1 + b^2) P R / (b^2 P + R) = 7/18 when P = R.
    assert tm.chrf(["abc"], ["abd"]) == pytest.approx(100 * 7 / 18, abs=1e-6)
    # hyp "ab", ref "abc": P = (1 + 1) / 2 = 1, R = (2/3 + 1/2) / 2 = 7/12; beta = 2 weighs recall:
    # F = 5 * 1 * 7/12 / (4 * 1 + 7/12) = 35/55 = 7/11
    assert tm.chrf(["ab"], ["abc"]) == pytest.approx(100 * 7 / 11, abs=1e-6)


def test_translation_scores_and_input_checks() -> None:
    scores = tm.translation_scores(["the cat sat on the mat today"], ["the cat sat on the mat"])
    assert set(scores) == {"chrf", "bleu"} and scores["bleu"] == pytest.approx(80.911, abs=1e-3)
    with pytest.raises(DeliaError, match="2 hypotheses but 1 references"):
        tm.bleu(["a", "b"], ["a"])
    with pytest.raises(DeliaError, match="at least one output"):
        tm.chrf([], [])


def test_bleurt_missing_checkpoint_or_package_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(DeliaError) as err:
        tm.translation_scores(["a"], ["a"], bleurt_checkpoint=str(tmp_path / "BLEURT-20"))
    message = str(err.value)
    assert (
        "\n" not in message and message.startswith("eval.bleurt_checkpoint=") and "no such folder" in message
    )
    assert "pip install git+https://github.com/lucadiliello/bleurt-pytorch" in message
    monkeypatch.setitem(sys.modules, "bleurt_pytorch", None)  # an import of it now fails
    with pytest.raises(
        DeliaError, match=r"eval\.bleurt_checkpoint=.*bleurt_pytorch is not installed; install"
    ):
        tm.bleurt(["a"], ["a"], str(tmp_path))


def test_bleurt_mean_with_a_stand_in_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    class Tokenizer:
        @classmethod
        def from_pretrained(cls, folder: str) -> Tokenizer:
            return cls()

        def __call__(self, refs: list[str], hyps: list[str], **kwargs: Any) -> dict[str, Any]:
            return {"same": torch.tensor([float(r == h) for r, h in zip(refs, hyps, strict=True)])}

    class Model:
        @classmethod
        def from_pretrained(cls, folder: str) -> Model:
            return cls()

        def eval(self) -> None:
            pass

        def __call__(self, same: torch.Tensor) -> types.SimpleNamespace:
            return types.SimpleNamespace(logits=same.unsqueeze(1))

    fake = types.ModuleType("bleurt_pytorch")
    fake.BleurtForSequenceClassification = Model  # type: ignore[attr-defined]
    fake.BleurtTokenizer = Tokenizer  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "bleurt_pytorch", fake)
    hyps, refs = ["a", "b", "c", "d", "e"], ["a", "b", "x", "d", "y"]
    assert tm.bleurt(hyps, refs, str(tmp_path), batch_size=2) == pytest.approx(3 / 5)
    assert tm.translation_scores(hyps, refs, bleurt_checkpoint=str(tmp_path))["bleurt"] == pytest.approx(0.6)
