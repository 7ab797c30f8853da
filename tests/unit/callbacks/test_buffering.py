"""The buffering-effect diagnostics: the measures mean what they say, and measuring changes nothing."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from delia.callbacks.buffering import BufferingDiagnostics, agreement, cancellation
from tests.conftest import TINY, compose_train


def test_identical_gradients_do_not_cancel_and_random_ones_do() -> None:
    same = torch.randn(1, 500).repeat(8, 1)
    assert cancellation(same) == pytest.approx(1.0, rel=1e-6)
    gen = torch.Generator().manual_seed(0)
    for k in (4, 16, 64):
        random = torch.randn(k, 20_000, generator=gen)
        assert cancellation(random) == pytest.approx(k**-0.5, rel=0.1)


def test_the_random_baseline_comes_from_the_norms_not_from_one_over_sqrt_k() -> None:
    """Orthogonal gradients of unequal norms cancel less than 1/sqrt(k): sqrt(mean n^2) / (mean n sqrt(k))."""
    norms = torch.tensor([1.0, 1.0, 1.0, 10.0])
    orthogonal = torch.diag(norms)  # four orthogonal rows
    stats = agreement(orthogonal, orthogonal)
    expected = float((norms**2).mean().sqrt() / (norms.mean() * 2))
    assert stats["diverse_cancellation"] == pytest.approx(expected)
    assert stats["diverse_cancellation_random"] == pytest.approx(expected) and expected > 0.5
    assert stats["diverse_cancellation_vs_random"] == pytest.approx(1.0)
    assert stats["diverse_norm_rms"] == pytest.approx(float((norms**2).mean().sqrt()))


def test_the_sign_flip_null_and_the_interval_separate_agreement_from_chance() -> None:
    gen = torch.Generator().manual_seed(1)
    unrelated = torch.randn(16, 4000, generator=gen)
    shared = torch.randn(1, 4000, generator=gen) * 3 + torch.randn(16, 4000, generator=gen)
    noise = agreement(unrelated, torch.randn(16, 4000, generator=gen))
    agreeing = agreement(shared, shared + torch.randn(16, 4000, generator=gen))
    # unrelated directions: the measure is within the no-effect spread; agreeing ones are far above it
    assert noise["diverse_cancellation"] < noise["diverse_cancellation_null95"]
    assert noise["task_diverse_cos_lo"] < 0 < noise["task_diverse_cos_hi"]
    assert abs(noise["task_diverse_cos"]) < noise["task_diverse_cos_null95"]
    assert agreeing["task_cancellation"] > agreeing["task_cancellation_null95"]
    assert agreeing["task_cancellation_lo"] > agreeing["task_cancellation_random"]
    assert agreeing["task_diverse_cos_lo"] > agreeing["task_diverse_cos_null95"]
    assert agreement(unrelated, unrelated, seed=3) == agreement(unrelated, unrelated, seed=3)


def test_task_kept_is_what_is_left_off_the_diverse_direction() -> None:
    task = torch.tensor([[3.0, 4.0], [3.0, 4.0]])
    along = agreement(task, torch.tensor([[1.0, 0.0], [1.0, 0.0]]))
    assert along["task_diverse_cos"] == pytest.approx(0.6) and along["task_kept"] == pytest.approx(16 / 25)
    assert agreement(task, task)["task_kept"] == pytest.approx(0.0, abs=1e-6)


def test_the_same_example_k_times_gives_cancellation_one(tiny_model) -> None:
    from delia.model import wrap_peft

    model, tok = tiny_model
    peft_model = wrap_peft(model, compose_train(TINY).peft, [])
    record = {
        "messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there."}]
    }
    other = {
        "messages": [{"role": "user", "content": "Name a fruit."}, {"role": "assistant", "content": "Pear."}]
    }
    diagnostics = BufferingDiagnostics(every_n_steps=1, k=4)
    diagnostics.probe([other, record, other, record], [record] * 4, tok, 128)
    metrics = diagnostics.measure(peft_model)
    assert metrics["buffer/diverse_cancellation"] == pytest.approx(1.0, rel=1e-4)
    assert metrics["buffer/task_cancellation"] < 1.0
    assert metrics["buffer/diverse_cancellation_lora"] == pytest.approx(1.0, rel=1e-4)


def test_a_resumed_run_measures_at_the_steps_an_unbroken_run_does(monkeypatch) -> None:
    """Resuming at step 40 of a run measured every 32 steps adds no point at 40, and step 0 stays step 0."""
    diagnostics = BufferingDiagnostics(every_n_steps=32, k=2)
    diagnostics.items = {"task": [{}], "diverse": [{}]}
    monkeypatch.setattr(
        diagnostics, "measure", lambda model: {"buffer/task_kept": 1.0, "buffer/seconds": 0.0}
    )
    trainer = SimpleNamespace(global_step=0, is_global_zero=True, loggers=[])
    module = SimpleNamespace(model=None)
    diagnostics.on_train_start(trainer, module)
    trainer.global_step = 32
    diagnostics.on_train_batch_end(trainer, module)
    resumed = BufferingDiagnostics(every_n_steps=32, k=2)
    resumed.items = diagnostics.items
    resumed.load_state_dict(diagnostics.state_dict())
    monkeypatch.setattr(resumed, "measure", diagnostics.measure)
    trainer.global_step = 40
    resumed.on_train_start(trainer, module)
    trainer.global_step = 64
    resumed.on_train_batch_end(trainer, module)
    assert [step for step, _ in resumed.history] == [0, 32, 64]
    resumed.history.pop()  # a checkpoint saved at step 64 before that step's measurement
    resumed.on_train_start(trainer, module)
    resumed.on_train_start(trainer, module)
    assert [step for step, _ in resumed.history] == [0, 32, 64]
    assert "buffer/task_kept_step0" in resumed.summary()
    late = BufferingDiagnostics(every_n_steps=32, k=2)
    late.history = [(32, {"buffer/task_kept": 1.0, "buffer/seconds": 0.0})]
    assert "buffer/task_kept_step0" not in late.summary()
