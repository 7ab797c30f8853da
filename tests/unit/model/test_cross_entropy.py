"""label_cross_entropy: F.cross_entropy's losses exactly, its gradient up to rounding, in the logits' dtype."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from delia.model.cross_entropy import label_cross_entropy


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_losses_and_gradients_match_cross_entropy(dtype: torch.dtype) -> None:
    generator = torch.Generator().manual_seed(0)
    logits = (torch.randn(37, 1000, generator=generator) * 4).to(dtype)
    targets = torch.randint(0, 1000, (37,), generator=generator)
    weights = torch.rand(37, generator=generator)  # a weighted sum: the incoming gradient is not all ones
    ours, reference = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    loss = label_cross_entropy(ours, targets)
    expected = F.cross_entropy(reference.float(), targets, reduction="none")
    assert torch.equal(loss, expected)
    (loss * weights).sum().backward()
    (expected * weights).sum().backward()
    assert ours.grad.dtype == dtype
    tolerance = {"rtol": 1e-5, "atol": 1e-7} if dtype == torch.float32 else {"rtol": 1e-2, "atol": 1e-4}
    torch.testing.assert_close(ours.grad, reference.grad, **tolerance)


def test_the_gradient_is_softmax_minus_the_label() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0]], requires_grad=True)
    label_cross_entropy(logits, torch.tensor([2])).sum().backward()
    torch.testing.assert_close(logits.grad, torch.tensor([[0.25, 0.25, -0.75, 0.25]]))
