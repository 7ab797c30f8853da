"""Generation with a batch of chat-templated prompts, left-padded, shared by self-sampling and evaluation."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch


@contextlib.contextmanager
def evaluating(model: torch.nn.Module) -> Iterator[None]:
    """Eval mode inside the block (no dropout); every submodule gets its own mode back afterwards."""
    modes = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


@torch.inference_mode()
def generate_new_tokens(
    model: Any, tokenizer: Any, prompts: list[str], **generate_kwargs: Any
) -> torch.Tensor:
    """The generated token ids (prompt cut off) for ``prompts``, batched with left padding.

    The prompts are already rendered with the chat template, so no special tokens are added; generation
    stops at the tokenizer's end-of-turn token and pads with its pad token.
    """
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = side
    out = model.generate(
        **enc, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, **generate_kwargs
    )
    return out[:, enc["input_ids"].shape[1] :]
