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


# end-of-turn markers of common chat templates; a model stops at any of them that its template writes
END_OF_TURN_MARKERS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>", "<|endoftext|>", "</s>")


def end_of_turn_ids(tokenizer: Any) -> list[int]:
    """The token ids that end a turn: the EOS token and every end-of-turn marker of the chat template.

    Gemma ends a turn with ``<end_of_turn>``, not with its EOS token: stopping on EOS alone would run
    such a model on into the next turn.
    """
    ids = {tokenizer.eos_token_id} if tokenizer.eos_token_id is not None else set()
    template = str(getattr(tokenizer, "chat_template", "") or "")
    for marker in END_OF_TURN_MARKERS:
        if marker in template:  # one lookup per marker: the whole vocabulary is slow to build (~40 ms)
            token_id = tokenizer.convert_tokens_to_ids(marker)
            if token_id is not None and tokenizer.convert_ids_to_tokens(token_id) == marker:
                ids.add(token_id)
    return sorted(ids)


def end_of_turn_texts(tokenizer: Any) -> list[str]:
    """The end-of-turn markers as text (to cut a decoded reply), plus the pad token."""
    texts = [tokenizer.convert_ids_to_tokens(i) for i in end_of_turn_ids(tokenizer)]
    return [t for t in [*texts, tokenizer.pad_token] if t]


def finished(new_tokens: torch.Tensor, stop_ids: list[int]) -> list[bool]:
    """Per row: whether generation ended at an end-of-turn token (else it hit the length limit)."""
    return torch.isin(new_tokens, torch.tensor(stop_ids, device=new_tokens.device)).any(dim=1).tolist()


@torch.inference_mode()
def generate_new_tokens(
    model: Any, tokenizer: Any, prompts: list[str], **generate_kwargs: Any
) -> torch.Tensor:
    """The generated token ids (prompt cut off) for ``prompts``, batched with left padding.

    The prompts are already rendered with the chat template, so no special tokens are added; generation
    stops at any end-of-turn token of the template (:func:`end_of_turn_ids`) and pads with the pad token.
    """
    side = tokenizer.padding_side
    tokenizer.padding_side = "left"
    try:
        enc = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    finally:
        tokenizer.padding_side = side
    out = model.generate(
        **enc, pad_token_id=tokenizer.pad_token_id, eos_token_id=end_of_turn_ids(tokenizer), **generate_kwargs
    )
    return out[:, enc["input_ids"].shape[1] :]
