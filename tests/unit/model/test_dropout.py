"""UniformDropout: nn.Dropout's distribution and scaling, installed on every LoRA dropout of a run."""

from __future__ import annotations

import torch

from delia.model.peft import UniformDropout, use_uniform_dropout, wrap_peft
from tests.conftest import TINY, compose_train


def test_it_drops_at_rate_p_and_scales_what_it_keeps() -> None:
    torch.manual_seed(0)
    x = torch.rand(1000, 1000) + 1.0  # never 0 itself
    y = UniformDropout(0.05).train()(x)
    dropped = float((y == 0).float().mean())
    assert abs(dropped - 0.05) < 5 * (0.05 * 0.95 / x.numel()) ** 0.5
    kept = y != 0
    torch.testing.assert_close(y[kept], x[kept] / 0.95, rtol=1e-6, atol=0)


def test_it_is_the_identity_in_eval_and_at_p_0() -> None:
    x = torch.randn(7, 5)
    assert torch.equal(UniformDropout(0.3).eval()(x), x)
    assert torch.equal(UniformDropout(0.0).train()(x), x)


def test_it_replaces_every_lora_dropout(tiny_model) -> None:
    model, _ = tiny_model
    peft_model = wrap_peft(model, compose_train(TINY).peft, [])
    peft_model.train()
    layers = model.config.num_hidden_layers
    assert use_uniform_dropout(peft_model) == 4 * layers  # q, k, v, o in each layer
    dropouts = [
        d for m in peft_model.modules() if hasattr(m, "lora_dropout") for d in m.lora_dropout.values()
    ]
    assert all(type(d) is UniformDropout and d.p == 0.05 and d.training for d in dropouts)
    assert use_uniform_dropout(peft_model) == 0  # already replaced
