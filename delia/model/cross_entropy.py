"""Cross-entropy at label positions with a backward pass that reuses the forward's log-probabilities.

``F.cross_entropy`` keeps the log-softmax output for its backward pass and there fills a zeroed
(tokens x vocabulary) gradient, scatters the labels into it and runs log-softmax's backward, which
allocates another (tokens x vocabulary) tensor. :func:`label_cross_entropy` turns the saved
log-probabilities into the gradient in place: softmax minus the one-hot label, scaled by the incoming
gradient. Over a 49k-token vocabulary at every label position that is most of the loss's time.

Guarantees: the per-token losses are bit-identical to ``F.cross_entropy(logits.float(), targets,
reduction="none")`` (the same log-softmax kernel, then the label's entry); the gradient is the same up to
float rounding; it is computed in float32 and returned in the logits' dtype. The backward pass can run
once (no double backward).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


class _LabelCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=-1, dtype=torch.float32)
        ctx.save_for_backward(log_probs, targets)
        ctx.logits_dtype = logits.dtype
        return -log_probs.gather(-1, targets[:, None])[:, 0]

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, grad_loss: torch.Tensor) -> tuple[torch.Tensor, None]:
        log_probs, targets = ctx.saved_tensors
        grad = log_probs.exp_()  # the saved tensor is not needed after this pass: softmax in place
        rows = torch.arange(len(targets), device=targets.device)
        grad[rows, targets] -= 1.0
        grad.mul_(grad_loss.to(torch.float32)[:, None])
        return grad.to(ctx.logits_dtype), None


def label_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-position next-token loss, (positions, vocabulary) logits and (positions,) labels in."""
    return _LabelCrossEntropy.apply(logits, targets)
