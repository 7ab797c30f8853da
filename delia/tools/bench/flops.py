"""What a training step costs: useful tokens and model FLOPs; the matmul peak of this machine."""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch
from omegaconf import DictConfig

from delia.data.packing import NO_SOURCE

log = logging.getLogger(__name__)


@dataclass
class Timing:
    """Seconds and useful tokens of each timed step (warmup steps dropped)."""

    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    flops: list[float] = field(default_factory=list)

    def tokens_per_s(self) -> float:
        return sum(self.tokens) / sum(self.seconds) if self.seconds else float("nan")

    def flops_per_s(self) -> float:
        return sum(self.flops) / sum(self.seconds) if self.seconds and self.flops else float("nan")


def example_lengths(batch: dict[str, torch.Tensor]) -> list[int]:
    """The token count of every real example in a collated batch (packed or padded)."""
    if "token_source" not in batch:
        return [int(n) for n in batch["attention_mask"].sum(dim=1)]
    lengths = []
    for positions, source in zip(batch["position_ids"], batch["token_source"], strict=True):
        real = positions[source != NO_SOURCE]
        starts = [*(real == 0).nonzero().flatten().tolist(), len(real)]
        lengths += [b - a for a, b in itertools.pairwise(starts)]
    return lengths


def matmul_params(model: Any) -> int:
    """Weights that take part in matmuls (every Linear, lm_head included; embedding lookups are not)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def step_flops(
    lengths: list[int],
    params: int,
    layers: int,
    width: int,
    recompute: bool,
    head_params: int = 0,
    head_tokens: int = 0,
) -> float:
    """FLOPs of one LoRA training step on examples of these lengths.

    Forward 2·P per token, backward 2·P per token for the input gradients (the frozen base computes no
    weight gradients; LoRA's are negligible); causal attention 2·n²·d per layer forward and twice that
    backward. Gradient checkpointing recomputes the forward once more. ``head_params`` of ``params``
    (the vocabulary projection) run only at the ``head_tokens`` label positions, as delia-train does.
    """
    passes = 3 if recompute else 2
    body = params - head_params
    dense = sum(2 * body * n for n in lengths) * passes + 4 * head_params * head_tokens
    attention = sum(2 * n * n * width * layers for n in lengths) * (passes + 1)
    return float(dense + attention)


def matmul_peak(size: int, repeats: int = 5, dtype: str = "float32") -> float:
    """Peak FLOP/s of a plain square matmul in ``dtype`` (float32 or bfloat16) on this machine, now (best
    of ``repeats``): the denominator of the MFU of a run in that precision."""
    kind = getattr(torch, dtype)
    a, b = torch.randn(size, size).to(kind), torch.randn(size, size).to(kind)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flop_counter(model: Any, cfg: DictConfig) -> Any:
    """``cost(lengths, label_tokens) -> FLOPs`` of our step for this model."""
    base = model.get_base_model()
    config = base.config
    params = matmul_params(base)
    head = base.get_output_embeddings().weight.numel()
    width = config.num_attention_heads * getattr(
        config, "head_dim", config.hidden_size // config.num_attention_heads
    )
    recompute = bool(cfg.model.get("gradient_checkpointing", False))
    return lambda lengths, labels: step_flops(
        lengths, params, config.num_hidden_layers, width, recompute, head_params=head, head_tokens=labels
    )
