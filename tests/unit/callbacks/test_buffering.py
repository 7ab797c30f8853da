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
