"""Labels: loss on assistant tokens only, never all masked; over-long examples as configured."""

from __future__ import annotations

import pytest

from delia.data.tokenize import IGNORE_INDEX, EncodeStats, encode_all, encode_chat
from delia.dataset import sep_format
from delia.infra.errors import DeliaError
from tests.conftest import compose_train

MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Name a colour."},
    {"role": "assistant", "content": "Blue."},
    {"role": "user", "content": "Another?"},
    {"role": "assistant", "content": "Green."},
]


def test_only_assistant_replies_carry_labels(tiny_model) -> None:
    _, tok = tiny_model
    item = encode_chat(tok, MESSAGES, max_length=512)
    trained = [t for t, label in zip(item["input_ids"], item["labels"], strict=True) if label != IGNORE_INDEX]
    text = tok.decode(trained)
    assert "Blue." in text and "Green." in text
    assert "colour" not in text and "Be brief" not in text and "Another" not in text
    full = tok.apply_chat_template(MESSAGES, tokenize=False)
    assert tok.decode(item["input_ids"]) == full


def test_labels_never_all_masked_on_the_builtin_task(tiny_model, tmp_path) -> None:
    _, tok = tiny_model
    splits = sep_format.build_splits(compose_train([], run_dir=tmp_path).dataset)
    items = encode_all(tok, splits["train"] + splits["seen_wordings"], 512, "error", "sep")
    assert len(items) == len(splits["train"]) + len(splits["seen_wordings"])
    for item in items:
        labelled = [label for label in item["labels"] if label != IGNORE_INDEX]
        assert labelled, "an example has no trained token"
        assert tok.decode(labelled).startswith("{'thought'")


def test_overlength_error_skip_truncate(tiny_model) -> None:
    _, tok = tiny_model
    long = [{"role": "user", "content": "word " * 300}, {"role": "assistant", "content": "ok"}]
    with pytest.raises(DeliaError, match=r"f\.jsonl:3: \d+ tokens, longer than data.max_length=64"):
        encode_chat(tok, long, 64, "error", origin="f.jsonl:3")
    stats = EncodeStats()
    assert encode_chat(tok, long, 64, "skip", stats=stats) is None and stats.skipped == 1
    # truncation that cuts away the whole reply skips the example rather than training on nothing
    assert encode_chat(tok, long, 64, "truncate", stats=stats) is None and stats.skipped == 2
    short_prompt = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 300}]
    item = encode_chat(tok, short_prompt, 64, "truncate", stats=stats)
    assert len(item["input_ids"]) == 64 and stats.truncated == 1


def test_a_truncated_reply_gets_no_label_on_its_end_of_turn(tiny_model) -> None:
    _, tok = tiny_model
    messages = [{"role": "user", "content": "Count."}, {"role": "assistant", "content": "One, two, thr"}]
    ended = encode_chat(tok, messages, max_length=512)
    cut = encode_chat(tok, messages, max_length=512, end_of_turn=False)
    assert ended["input_ids"] == cut["input_ids"]
    trained_ended = tok.decode([t for t in ended["labels"] if t != IGNORE_INDEX])
    trained_cut = tok.decode([t for t in cut["labels"] if t != IGNORE_INDEX])
    assert tok.eos_token in trained_ended and tok.eos_token not in trained_cut
    assert trained_cut.strip() == "One, two, thr"


def _sentencepiece_tokenizer():
    """A small SentencePiece-style tokenizer (a "▁" before every word, also at the start of a piece)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    words = "the a colour name blue green another be brief one two three you are user assistant".split()
    core = Tokenizer(models.Unigram())
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Metaspace()
    core.train_from_iterator(
        [" ".join(words)] * 50,
        trainers.UnigramTrainer(vocab_size=120, special_tokens=["<s>", "</s>", "<unk>"], unk_token="<unk>"),
    )
    tok = PreTrainedTokenizerFast(tokenizer_object=core, bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    tok.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}{% if m['role'] == 'assistant' %}"
        "{{ eos_token }}{% endif %}\n{% endfor %}{% if add_generation_prompt %}assistant: {% endif %}"
    )
    return tok


def test_pieces_that_tokenize_differently_alone_fall_back_to_the_whole_conversation() -> None:
    tok = _sentencepiece_tokenizer()
    messages = [{"role": "user", "content": "name a colour"}, {"role": "assistant", "content": "blue green"}]
    item = encode_chat(tok, messages, max_length=512)
    whole = tok.apply_chat_template(messages, tokenize=False)
    pieces = [tok.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)]
    pieces.append(whole[len(pieces[0]) :])
    # precondition: piece by piece, this tokenizer puts a "▁" where the whole text has none
    by_piece = [i for piece in pieces for i in tok.encode(piece, add_special_tokens=False)]
    assert by_piece != tok.encode(whole, add_special_tokens=False)
    assert item["input_ids"] == tok.encode(whole, add_special_tokens=False)
    trained = tok.decode([t for t in item["labels"] if t != IGNORE_INDEX])
    assert "blue green" in trained and "colour" not in trained and "user" not in trained
