"""Attention for packed rows that computes only what the block-diagonal causal mask keeps.

A packed batch (:mod:`delia.data.packing`) puts several examples in one row, with ``position_ids``
restarting at 0 for each and no ``attention_mask``. Transformers' ``sdpa`` then builds the block-diagonal
causal mask and hands it to SDPA, which on a CPU computes every query-key pair of the row (a mask switches
off the causal skip) and repeats the grouped key/value heads: for two examples of 256 tokens in a row of
512, four times the attention work that the mask keeps. ``delia_sdpa`` runs SDPA once per example
instead (``is_causal``, grouped heads as they are).

Guarantees:

- the same result as ``sdpa`` up to float rounding; :func:`use_packed_attention` checks that on the
  model itself (one short packed row, both implementations) before switching, and keeps ``sdpa`` if not;
- every input that is not a packed row (a padding mask, a cache, a query shorter than its keys, a model
  with sliding-window layers) goes to transformers' own ``sdpa`` functions unchanged;
- the examples of a row come from ``position_ids`` (a new example wherever a position is not the
  previous one plus 1: transformers' own rule for packed rows), which each layer receives, so activation
  checkpointing's recomputation sees the same rows.
"""

from __future__ import annotations

import itertools
import logging
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

NAME = "delia_sdpa"


def example_lengths(position_ids: torch.Tensor) -> list[list[int]]:
    """The lengths of the examples packed in each row: a new one wherever a position is not previous + 1."""
    starts = torch.ones(position_ids.shape, dtype=torch.bool, device=position_ids.device)
    starts[:, 1:] = position_ids[:, 1:] != position_ids[:, :-1] + 1
    width = position_ids.shape[1]
    lengths = []
    for row in starts.cpu():
        bounds = [*row.nonzero().flatten().tolist(), width]
        lengths.append([b - a for a, b in itertools.pairwise(bounds)])
    return lengths


def _per_example(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, lengths: list[list[int]], **sdpa: Any
) -> torch.Tensor:
    """SDPA with ``is_causal`` on each example of each row; (batch, heads, length, dim) in and out.

    ``unbind`` and ``split`` (not indexing) so that the backward pass stacks and concatenates the gradients
    once, instead of writing each example's slice into a zeroed copy of the whole tensor.
    """
    rows = []
    for q, k, v, row in zip(query.unbind(0), key.unbind(0), value.unbind(0), lengths, strict=True):
        parts = zip(q.split(row, dim=1), k.split(row, dim=1), v.split(row, dim=1), strict=True)
        outs = [
            F.scaled_dot_product_attention(a[None], b[None], c[None], is_causal=True, **sdpa)
            for a, b, c in parts
        ]
        rows.append(torch.cat(outs, dim=2)[0])
    return torch.stack(rows)


def attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """The attention function of ``delia_sdpa`` (transformers' AttentionInterface signature)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    plain = (
        attention_mask is not None
        or position_ids is None
        or query.shape[2] != key.shape[2]
        or query.shape[2] < 2
        or kwargs.get("sliding_window") is not None
        or kwargs.get("position_bias") is not None
        or not getattr(module, "is_causal", True)
    )
    lengths = None if plain else example_lengths(position_ids.expand(query.shape[0], -1))
    if lengths is None or all(len(row) == 1 for row in lengths):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout, scaling, **kwargs)
    sdpa: dict[str, Any] = {"dropout_p": dropout, "scale": scaling}
    if query.shape[1] != key.shape[1]:
        sdpa["enable_gqa"] = True
    out = _per_example(query, key, value, lengths, **sdpa)
    return out.transpose(1, 2).contiguous(), None


def mask(*args: Any, **kwargs: Any) -> torch.Tensor | None:
    """The mask function of ``delia_sdpa``: none for a row without padding, cache or extra mask pattern
    (the attention reads the examples from the positions); transformers' ``sdpa_mask`` otherwise."""
    from transformers.masking_utils import sdpa_mask

    config = kwargs.get("config")
    plain_causal = (
        kwargs.get("attention_mask") is None
        and kwargs.get("q_offset", 0) == 0
        and kwargs.get("kv_offset", 0) == 0
        and kwargs.get("q_length") == kwargs.get("kv_length")
        and not kwargs.get("use_vmap", False)
        and getattr(config, "sliding_window", None) is None
        and not args
    )
    return None if plain_causal else sdpa_mask(*args, **kwargs)


def register() -> None:
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    AttentionInterface.register(NAME, attention)
    AttentionMaskInterface.register(NAME, mask)


def _base(model: Any) -> Any:
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _packed_row(vocab_size: int, device: torch.device) -> dict[str, torch.Tensor]:
    """One row of three examples (lengths 6, 4, 5), as delia.data.packing writes them."""
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(0, vocab_size, (1, 15), generator=generator)
    positions = torch.cat([torch.arange(6), torch.arange(4), torch.arange(5)])[None]
    return {"input_ids": ids.to(device), "position_ids": positions.to(device)}


def _hidden(base: Any, row: dict[str, torch.Tensor]) -> torch.Tensor:
    return base.get_decoder()(**row, use_cache=False).last_hidden_state.float()


def use_packed_attention(model: Any) -> bool:
    """Switch a (peft-wrapped) model from ``sdpa`` to ``delia_sdpa`` if it gives the same hidden states
    on a packed row; returns whether it did. Other implementations (eager, flash attention) are kept."""
    base = _base(model)
    config = getattr(base, "config", None)
    if (
        config is None
        or getattr(config, "_attn_implementation", None) != "sdpa"
        or not hasattr(base, "get_decoder")
    ):
        return False
    if getattr(config.get_text_config(), "sliding_window", None) is not None:
        return False
    register()
    row = _packed_row(int(config.get_text_config().vocab_size), base.device)
    training = base.training
    base.eval()
    try:
        with torch.no_grad():
            reference = _hidden(base, row)
            base.set_attn_implementation(NAME)
            packed = _hidden(base, row)
    finally:
        base.train(training)
    if config._attn_implementation != NAME:  # a model that cannot switch (transformers warned)
        return False
    tolerance = 1e-3 * max(1.0, float(reference.abs().max()))
    if not torch.allclose(packed, reference, rtol=1e-3, atol=tolerance):
        base.set_attn_implementation("sdpa")
        log.warning("packed attention: %s differs from sdpa on this model; keeping sdpa", NAME)
        return False
    log.info("packed attention: %s (one causal SDPA per packed example)", NAME)
    return True
