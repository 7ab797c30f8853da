"""Representation analysis: word spans, hidden states, distances, and the tracking callback."""

from __future__ import annotations

import contextlib
import csv
import importlib.util
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader

from delia.callbacks.representation import RepresentationTracker
from delia.eval.representation import (
    default_layers,
    representation_distances,
    token_hidden_states,
    word_span,
)
from delia.model import add_special_token, resize_for_tokenizer, wrap_peft
from tests.conftest import REPO, TINY, compose_train

TOKEN = "<sep>"
KEYWORDS = ["json", "thought"]
HIDDEN = 64  # conf/model/tiny_random.yaml


@pytest.fixture
def with_sep(tiny_model: tuple[Any, Any]) -> tuple[Any, Any, int]:
    """The tiny model and tokenizer with ``<sep>`` added and the embeddings resized."""
    model, tokenizer = tiny_model
    token_id = add_special_token(tokenizer, TOKEN)
    resize_for_tokenizer(model, tokenizer)
    return model, tokenizer, token_id


def _peft(model: Any, token_id: int) -> Any:
    return wrap_peft(model, compose_train(TINY).peft, [token_id])


def test_default_layers() -> None:
    assert default_layers(2) == [1, 2]
    assert default_layers(30) == [1, 2, 15, 30]
    assert default_layers(32) == [1, 2, 16, 32]
    assert default_layers(4) == [1, 2, 4]
    assert default_layers(1) == [1]
    with pytest.raises(ValueError):
        default_layers(0)


def test_span_is_exactly_the_new_token(with_sep: tuple[Any, Any, int]) -> None:
    _, tokenizer, token_id = with_sep
    ids, start, end = word_span(tokenizer, TOKEN)
    assert end - start == 1
    assert ids[start] == token_id
    assert ids.count(token_id) == 1


def test_span_covers_the_split_word(with_sep: tuple[Any, Any, int]) -> None:
    _, tokenizer, _ = with_sep
    ids, start, end = word_span(tokenizer, "json")
    assert tokenizer.decode(ids[start:end]).strip() == "json"
    assert ids[start:end] == tokenizer.encode(" json", add_special_tokens=False)
    assert ids[:start] == tokenizer.encode("The answer uses the", add_special_tokens=False)
    # a word of several tokens, at the start of the context and glued to the text after it
    ids, start, end = word_span(tokenizer, "hallucination", context="{word}: yes")
    assert start == 0
    assert end > 1
    assert tokenizer.decode(ids[start:end]).strip() == "hallucination"


def test_span_rejects_bad_context(with_sep: tuple[Any, Any, int]) -> None:
    _, tokenizer, _ = with_sep
    with pytest.raises(ValueError, match="exactly once"):
        word_span(tokenizer, "json", context="no placeholder")
    with pytest.raises(ValueError, match="exactly once"):
        word_span(tokenizer, "json", context="{word} and {word}")


def test_hidden_states_shape_and_mode(with_sep: tuple[Any, Any, int]) -> None:
    model, tokenizer, _ = with_sep
    model.train()
    model.model.layers[0].eval()  # a mixed-mode model keeps each submodule's own mode
    states = token_hidden_states(model, tokenizer, "json", [0, 1, 2])
    assert sorted(states) == [0, 1, 2]
    for state in states.values():
        assert state.shape == (HIDDEN,)
        assert state.dtype == torch.float32
        assert torch.isfinite(state).all()
    assert model.training
    assert not model.model.layers[0].training
    assert model.model.layers[1].training
    with pytest.raises(ValueError, match="do not exist"):
        token_hidden_states(model, tokenizer, "json", [3])


def test_layer0_is_the_embedding_row(with_sep: tuple[Any, Any, int]) -> None:
    model, tokenizer, token_id = with_sep
    state = token_hidden_states(model, tokenizer, TOKEN, [0])[0]
    torch.testing.assert_close(state, model.get_input_embeddings().weight[token_id].detach().float())


def test_the_adapter_off_script_holds_the_row_where_the_model_reads_it(
    with_sep: tuple[Any, Any, int],
) -> None:
    """notebooks/sep_with_adapter_off.py: the row it sets is what the model embeds, LoRA on or off (peft
    reads its trainable-token copy with the adapter on, the base matrix with it off); then it is restored."""
    path = REPO / "notebooks" / "sep_with_adapter_off.py"
    spec = importlib.util.spec_from_file_location("sep_with_adapter_off", path)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    model, tokenizer, token_id = with_sep
    peft_model = _peft(model, token_id)
    before = token_hidden_states(peft_model, tokenizer, TOKEN, [0])[0]
    values = torch.randn(HIDDEN, generator=torch.Generator().manual_seed(0))
    for lora_off in (False, True):
        lora = peft_model.disable_adapter() if lora_off else contextlib.nullcontext()
        with script.row_set_to(peft_model, token_id, values), lora:
            torch.testing.assert_close(token_hidden_states(peft_model, tokenizer, TOKEN, [0])[0], values)
    torch.testing.assert_close(token_hidden_states(peft_model, tokenizer, TOKEN, [0])[0], before)


def test_distance_to_itself_is_zero(with_sep: tuple[Any, Any, int]) -> None:
    model, tokenizer, _ = with_sep
    for word in (TOKEN, "json"):
        dist = representation_distances(model, tokenizer, word, [word])
        assert set(dist) == {"repr/l2_layer1", "repr/cos_layer1", "repr/l2_layer2", "repr/cos_layer2"}
        for value in dist.values():
            assert abs(value) < 1e-5


def test_distances_finite_and_positive(with_sep: tuple[Any, Any, int]) -> None:
    model, tokenizer, _ = with_sep
    dist = representation_distances(model, tokenizer, TOKEN, KEYWORDS, layers=[0, 1, 2])
    assert len(dist) == 6
    for name, value in dist.items():
        assert math.isfinite(value), name
        assert value > 1e-4, name


def test_peft_model_matches_bare_model_before_training(with_sep: tuple[Any, Any, int]) -> None:
    model, tokenizer, token_id = with_sep
    bare = representation_distances(model, tokenizer, TOKEN, KEYWORDS)
    peft_model = _peft(model, token_id)
    peft_model.train()
    wrapped = representation_distances(peft_model, tokenizer, TOKEN, KEYWORDS)  # layers from the config
    assert wrapped.keys() == bare.keys()
    for name in bare:
        assert wrapped[name] == pytest.approx(bare[name], rel=1e-5, abs=1e-6), name
    assert peft_model.training


def test_keyword_mean_init_is_closer_than_random(with_sep: tuple[Any, Any, int]) -> None:
    """The intended signal: a <sep> row at the keywords' mean row is closer (layer 1) than random rows."""
    model, tokenizer, token_id = with_sep
    weight = model.get_input_embeddings().weight
    keyword_ids = [i for word in KEYWORDS for i in _word_ids(tokenizer, word)]
    sigma = weight[:token_id].detach().std()
    random_l2 = []
    for seed in range(3):
        row = torch.randn(weight.shape[1], generator=torch.Generator().manual_seed(seed)) * sigma
        with torch.no_grad():
            weight[token_id] = row
        random_l2.append(representation_distances(model, tokenizer, TOKEN, KEYWORDS, [1])["repr/l2_layer1"])
    with torch.no_grad():
        weight[token_id] = weight[keyword_ids].mean(dim=0)
    mean_dist = representation_distances(model, tokenizer, TOKEN, KEYWORDS, [0, 1])
    assert mean_dist["repr/l2_layer0"] < 1e-5  # one token per keyword: the embedding output is linear
    assert mean_dist["repr/l2_layer1"] < 0.5 * min(random_l2)


def _word_ids(tokenizer: Any, word: str) -> list[int]:
    ids, start, end = word_span(tokenizer, word)
    return ids[start:end]


# ---------------------------------------------------------------------------------------------
# The callback inside a real (tiny) Lightning fit
# ---------------------------------------------------------------------------------------------


class _LMModule(L.LightningModule):
    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def training_step(self, batch: torch.Tensor, batch_idx: int) -> torch.Tensor:
        loss = self.model(input_ids=batch, labels=batch).loss
        self.log("train/loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW([p for p in self.model.parameters() if p.requires_grad], lr=1e-2)


class _FixedBatches(L.LightningDataModule):
    def __init__(self, tokenizer: Any, n_batches: int) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        text = f"Answer in the {TOKEN} format: a json with thought and hallucination."
        ids = torch.tensor(tokenizer.encode(text, add_special_tokens=False))
        self.batches = [ids.repeat(2, 1) for _ in range(n_batches)]

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.batches, batch_size=None)


def _fit(
    with_sep: tuple[Any, Any, int], tmp_path: Path, accumulate: int
) -> tuple[RepresentationTracker, _LMModule]:
    model, tokenizer, token_id = with_sep
    tracker = RepresentationTracker(TOKEN, KEYWORDS, layers=[1, 2], every_n_steps=2)
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=4,
        accumulate_grad_batches=accumulate,
        logger=CSVLogger(tmp_path),
        log_every_n_steps=50,  # the tracker writes its own rows, whatever this grid is
        callbacks=[tracker],
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    module = _LMModule(_peft(model, token_id).train())  # from_pretrained leaves it in eval mode
    trainer.fit(module, datamodule=_FixedBatches(tokenizer, 4 * accumulate))
    assert trainer.global_step == 4
    return tracker, module


def _csv_rows(tmp_path: Path) -> list[dict[str, str]]:
    (metrics_file,) = tmp_path.rglob("metrics.csv")
    with metrics_file.open() as f:
        return list(csv.DictReader(f))


def test_tracker_in_a_tiny_fit(with_sep: tuple[Any, Any, int], tmp_path: Path) -> None:
    tracker, module = _fit(with_sep, tmp_path, accumulate=1)
    assert [step for step, _ in tracker.history] == [0, 2, 4]
    start, end = tracker.history[0][1], tracker.history[-1][1]
    assert start.keys() == {"repr/l2_layer1", "repr/cos_layer1", "repr/l2_layer2", "repr/cos_layer2"}
    assert start["repr/l2_layer1"] != end["repr/l2_layer1"]  # the <sep> row and LoRA trained
    rows = _csv_rows(tmp_path)
    assert "repr/l2_layer1" in rows[0]
    logged = [(int(r["step"]), float(r["repr/l2_layer1"])) for r in rows if r["repr/l2_layer1"]]
    assert logged == [(step, dist["repr/l2_layer1"]) for step, dist in tracker.history]

    final = tracker.final(module, with_sep[1])
    assert final["repr/l2_layer1"] == pytest.approx(end["repr/l2_layer1"], rel=1e-5)


def test_tracker_measures_once_per_step_under_accumulation(
    with_sep: tuple[Any, Any, int], tmp_path: Path
) -> None:
    tracker, _ = _fit(with_sep, tmp_path, accumulate=2)
    assert [step for step, _ in tracker.history] == [0, 2, 4]


def test_tracker_history_survives_a_checkpoint(with_sep: tuple[Any, Any, int], tmp_path: Path) -> None:
    tracker, _ = _fit(with_sep, tmp_path, accumulate=1)
    restored = RepresentationTracker(TOKEN, KEYWORDS, layers=[1, 2], every_n_steps=2)
    restored.load_state_dict(tracker.state_dict())
    assert restored.history == tracker.history
    assert restored._last_step == 4


def test_tracker_without_tokenizer_fails_clearly() -> None:
    tracker = RepresentationTracker(TOKEN, KEYWORDS)

    class _Trainer:
        datamodule = None

    with pytest.raises(ValueError, match="needs a tokenizer"):
        tracker._tokenizer(_Trainer())  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        RepresentationTracker(TOKEN, KEYWORDS, every_n_steps=0)


def test_the_report_has_scale_free_per_keyword_and_description_measures(
    with_sep: tuple[Any, Any, int],
) -> None:
    from delia.dataset.sep_format import prior_description
    from delia.eval.representation import representation_report

    model, tokenizer, _ = with_sep
    report = representation_report(model, tokenizer, TOKEN, KEYWORDS, [1, 2], prior_description())
    states = [token_hidden_states(model, tokenizer, word, [1]) for word in KEYWORDS]
    norm = float(torch.stack([torch.linalg.vector_norm(s[1]) for s in states]).mean())
    assert report["repr/rel_l2_layer1"] == pytest.approx(report["repr/l2_layer1"] / norm, rel=1e-5)
    for word in KEYWORDS:
        assert report[f"repr/l2_layer1_{word}"] > 0
    assert {"repr/desc_l2_layer1", "repr/desc_cos_layer1", "repr/desc_rel_l2_layer2"} <= set(report)


def test_the_percentile_is_a_rank_that_a_change_of_scale_does_not_move() -> None:
    from delia.eval.representation import closer_share

    reference = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0], [4.0, 0.0]])
    centroid, token = torch.zeros(2), torch.tensor([0.0, 2.5])  # 2.5 away: two reference rows are closer
    assert closer_share(token, centroid, reference) == 0.5
    for scale in (0.01, 7.0):  # hidden states of another scale: L2 moves, the rank does not
        assert closer_share(scale * token, scale * centroid, scale * reference) == 0.5
    assert closer_share(centroid, centroid, reference) == 0.0  # on the centroid: nearer than every word


def test_batched_word_states_are_the_single_word_states(tiny_model) -> None:
    from delia.eval.representation import DEFAULT_CONTEXT, reference_words, token_hidden_states, word_states

    model, tok = tiny_model
    words = reference_words(tok, exclude={"json", "thought"})
    assert len(words) == 2048 and "json" not in words and len(set(words)) == len(words)
    picked = words[::300]
    batched = word_states(model, tok, picked, [1, 2], DEFAULT_CONTEXT, batch_size=3)
    for i, word in enumerate(picked):
        alone = token_hidden_states(model, tok, word, [1, 2])
        for k in (1, 2):
            torch.testing.assert_close(batched[k][i], alone[k], rtol=1e-4, atol=1e-5)


def test_the_report_has_the_percentile_at_the_papers_layers(tiny_model) -> None:
    from delia.eval.representation import representation_report
    from delia.model import add_new_tokens

    model, tok = tiny_model
    add_new_tokens(model, tok, "<sep>", "resize", None, 0)
    report = representation_report(model, tok, "<sep>", ["json", "thought"], [1, 2])
    assert {"repr/pct_layer1", "repr/pct_layer2"} <= set(report)
    assert all(0.0 <= report[f"repr/pct_layer{k}"] <= 1.0 for k in (1, 2))
