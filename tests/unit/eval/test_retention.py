"""Retention: the held-out diverse slice, perplexity and probe accuracy before/after, the cache."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from delia import diverse as sampling
from delia.eval import retention
from delia.eval.evaluate import eval_loss
from delia.eval.probe import ProbeItem


class UniformLM(torch.nn.Module):
    """A model whose next-token distribution is uniform over ``vocab`` tokens: perplexity is ``vocab``."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab = vocab
        self.anchor = torch.nn.Parameter(torch.zeros(1))

    @property
    def device(self) -> torch.device:
        return self.anchor.device

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, **kwargs: object):
        logits = torch.zeros(*input_ids.shape, self.vocab)

        class Out:
            pass

        out = Out()
        out.logits = logits
        return out


def test_perplexity_of_a_uniform_model_is_its_vocabulary_size(tiny_model) -> None:
    _, tok = tiny_model
    records = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello there"}]},
        {"messages": [{"role": "user", "content": "2+2?"}, {"role": "assistant", "content": "four"}]},
    ]
    loss = eval_loss(UniformLM(len(tok)), tok, records, max_length=64, batch_size=2)
    assert loss == pytest.approx(math.log(len(tok)), rel=1e-6)
    assert math.exp(loss) == pytest.approx(len(tok), rel=1e-5)


def test_retention_metrics_are_before_after_and_the_change() -> None:
    out = retention.retention_metrics(
        {"ppl_heldout_diverse": 10.0, "probe_acc": 0.5}, {"ppl_heldout_diverse": 12.5, "probe_acc": 0.25}
    )
    assert out == {
        "retention/ppl_heldout_diverse_before": 10.0,
        "retention/ppl_heldout_diverse_after": 12.5,
        "retention/ppl_heldout_diverse_change": 2.5,
        "retention/probe_acc_before": 0.5,
        "retention/probe_acc_after": 0.25,
        "retention/probe_acc_change": -0.25,
    }


def test_training_never_samples_a_held_out_query() -> None:
    queries = sampling.load_queries("builtin")
    train = {queries[i]["query"] for i in sampling.query_order(queries, 0, heldout=False)}
    held = {queries[i]["query"] for i in sampling.query_order(queries, 7, heldout=True)}
    assert held and train and not train & held
    assert len(train) + len(held) == len({q["query"] for q in queries})
    assert sampling.query_order(queries, 3, True) != sampling.query_order(queries, 4, True)


def test_before_is_measured_once_per_model_and_then_read_from_the_cache(
    tiny_model, tmp_path: Path, monkeypatch
) -> None:
    model, tok = tiny_model
    cfg = OmegaConf.create({"max_new_tokens": 4, "batch_size": 4, "probe": "builtin"})
    probe = [ProbeItem("a", "What is the capital of France?", ("Paris",))]
    heldout = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "an answer"}]}
    ]
    first = retention.measure_before(model, tok, heldout, probe, cfg, 64, tmp_path, {"name": "tiny"})
    assert set(first) == set(retention.KEYS) and first["ppl_heldout_diverse"] > 1

    def must_not_run(*args, **kwargs):
        raise AssertionError("measured again although cached")

    monkeypatch.setattr(retention, "measure", must_not_run)
    assert retention.measure_before(model, tok, heldout, probe, cfg, 64, tmp_path, {"name": "tiny"}) == first
    with pytest.raises(AssertionError):  # another model is another cache entry
        retention.measure_before(model, tok, heldout, probe, cfg, 64, tmp_path, {"name": "other"})


def test_a_delia_run_reports_retention_before_and_after(tiny_run) -> None:
    _, metrics = tiny_run
    for key in retention.KEYS:
        before, after = metrics[f"retention/{key}_before"], metrics[f"retention/{key}_after"]
        assert metrics[f"retention/{key}_change"] == pytest.approx(after - before)
    assert metrics["retention/ppl_heldout_diverse_before"] > 1
    assert 0 <= metrics["retention/probe_acc_after"] <= 1
