"""The new special token (conf/token_init/): add it, resize the embeddings, initialise its row.

Strategies (``token_init.strategy``), each a function of the old rows of an embedding matrix:
``resize`` is the new row as the authors' release got it from transformers' resize in mid-2024, N(0,
initializer_range) (today's transformers draws around the mean embedding instead: that is ``mean``,
nearly); ``random`` draws N(0, sigma) with sigma the std of the old rows; ``mean`` is the mean of all old
rows; ``description`` the mean of the prior description's token rows (the fact-based baseline).
A model with tied embeddings has one matrix; with untied ones the output matrix gets its new rows by
the same strategy from its own old rows, so the new token is also a sensible output.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from delia.infra.errors import DeliaError


def add_special_token(tokenizer: Any, token: str) -> int:
    """Add ``token`` as one new special token and return its id; refuse a token the vocabulary has."""
    if not token or token != token.strip() or any(ch.isspace() for ch in token):
        raise DeliaError(
            f"dataset.special_token={token!r} is empty or holds whitespace, which tokenization splits; "
            f"use one word such as <sep>"
        )
    if token in tokenizer.get_vocab():
        raise DeliaError(
            f"dataset.special_token={token!r} is already in the tokenizer's vocabulary; pick a new string"
        )
    tokenizer.add_tokens([token], special_tokens=True)
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        raise DeliaError(f"dataset.special_token={token!r} encodes to {len(ids)} tokens, expected 1")
    return ids[0]


def resize_for_tokenizer(model: Any, tokenizer: Any) -> None:
    """Resize the embeddings to the tokenizer (transformers' mean-and-covariance init for new rows)."""
    if model.get_input_embeddings().weight.shape[0] != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)


@dataclass(frozen=True)
class InitContext:
    """What a strategy may use besides the old rows."""

    description_ids: list[int]
    seed: int
    initializer_range: float


def _resize_rows(old: torch.Tensor, n: int, ctx: InitContext) -> torch.Tensor:
    gen = torch.Generator().manual_seed(ctx.seed)
    return torch.randn(n, old.shape[1], generator=gen) * ctx.initializer_range


def _random_rows(old: torch.Tensor, n: int, ctx: InitContext) -> torch.Tensor:
    gen = torch.Generator().manual_seed(ctx.seed)
    return torch.randn(n, old.shape[1], generator=gen) * old.std()


def _mean_rows(old: torch.Tensor, n: int, ctx: InitContext) -> torch.Tensor:
    return old.mean(dim=0, keepdim=True).expand(n, -1)


def _description_rows(old: torch.Tensor, n: int, ctx: InitContext) -> torch.Tensor:
    return old[ctx.description_ids].mean(dim=0, keepdim=True).expand(n, -1)


# token_init.strategy -> the new rows
STRATEGIES: dict[str, Callable[[torch.Tensor, int, InitContext], torch.Tensor]] = {
    "resize": _resize_rows,
    "random": _random_rows,
    "mean": _mean_rows,
    "description": _description_rows,
}


def init_new_token_rows(
    model: Any, tokenizer: Any, token_ids: list[int], strategy: str, description: str | None, seed: int
) -> None:
    """Initialise the new tokens' embedding rows with ``strategy`` (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise DeliaError(f"token_init.strategy={strategy!r} is unknown: use {', '.join(STRATEGIES)}")
    if strategy == "description" and not description:
        raise DeliaError("token_init=description needs a prior description: the dataset has none")
    description_ids = (
        [i for i in tokenizer.encode(description, add_special_tokens=False) if i not in token_ids]
        if description
        else []
    )
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    ctx = InitContext(description_ids, seed, float(getattr(config, "initializer_range", 0.02)))
    for weight in _embedding_matrices(model):
        old = weight[: min(token_ids)].detach().float()
        with torch.no_grad():
            weight[token_ids] = STRATEGIES[strategy](old, len(token_ids), ctx).to(weight.dtype)


def _embedding_matrices(model: Any) -> list[torch.Tensor]:
    """The input embedding matrix, and the output one when it is not tied to it."""
    weights = [model.get_input_embeddings().weight]
    output = model.get_output_embeddings()
    if output is not None and output.weight.data_ptr() != weights[0].data_ptr():
        weights.append(output.weight)
    return weights


def add_new_tokens(
    model: Any, tokenizer: Any, token: str | None, strategy: str, description: str | None, seed: int
) -> dict[str, int]:
    """Step 2 of the algorithm: add the special token, resize, initialise its row; ``{token: id}``."""
    if not token:
        return {}
    token_id = add_special_token(tokenizer, token)
    resize_for_tokenizer(model, tokenizer)
    init_new_token_rows(model, tokenizer, [token_id], strategy, description, seed)
    return {token: token_id}
