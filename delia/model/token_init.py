"""The new special token (conf/token_init/): add it, resize the embeddings, initialise its row.

Strategies (``token_init.strategy``), each a function of the old embedding rows:
``resize`` keeps transformers' resize init; ``random`` draws N(0, sigma) with sigma the std of the
old rows; ``mean`` is the mean of all old rows; ``description`` the mean of the prior description's
token rows (the fact-based baseline). The tied output rows follow the input rows.
"""

from __future__ import annotations

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


def _random_rows(old: torch.Tensor, n: int, description_ids: list[int], seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, old.shape[1], generator=gen) * old.std()


def _mean_rows(old: torch.Tensor, n: int, description_ids: list[int], seed: int) -> torch.Tensor:
    return old.mean(dim=0, keepdim=True).expand(n, -1)


def _description_rows(old: torch.Tensor, n: int, description_ids: list[int], seed: int) -> torch.Tensor:
    return old[description_ids].mean(dim=0, keepdim=True).expand(n, -1)


# token_init.strategy -> the new rows (``resize`` keeps what the resize gave)
STRATEGIES = {"resize": None, "random": _random_rows, "mean": _mean_rows, "description": _description_rows}


def init_new_token_rows(
    model: Any, tokenizer: Any, token_ids: list[int], strategy: str, description: str | None, seed: int
) -> None:
    """Initialise the new tokens' embedding rows with ``strategy`` (see the module docstring)."""
    if strategy not in STRATEGIES:
        raise DeliaError(f"token_init.strategy={strategy!r} is unknown: use {', '.join(STRATEGIES)}")
    make_rows = STRATEGIES[strategy]
    if make_rows is None:
        return
    if strategy == "description" and not description:
        raise DeliaError("token_init=description needs a prior description: the dataset has none")
    weight = model.get_input_embeddings().weight
    old = weight[: min(token_ids)].detach().float()
    description_ids = (
        [i for i in tokenizer.encode(description, add_special_tokens=False) if i not in token_ids]
        if description
        else []
    )
    rows = make_rows(old, len(token_ids), description_ids, seed)
    with torch.no_grad():
        weight[token_ids] = rows.to(weight.dtype)


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
