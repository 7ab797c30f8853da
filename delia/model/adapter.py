"""Adapter I/O: the peft adapter, the tokenizer with its added tokens, and the new rows' initial values.

An adapter saved after a resize only loads onto a base resized the same way, so the new tokens' rows
are stored apart (``new_token_rows.safetensors``) and :func:`load_adapter` redoes the resize.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig
from safetensors.torch import load_file, save_file

from delia.infra.errors import DeliaError
from delia.infra.files import atomic_folder
from delia.model.sources import load_base
from delia.model.token_init import resize_for_tokenizer

ADAPTER_META = "delia_adapter.json"
NEW_TOKEN_ROWS = "new_token_rows.safetensors"


def save_adapter(
    peft_model: Any, tokenizer: Any, folder: Path, new_tokens: dict[str, int], base: dict
) -> None:
    """Save the peft adapter, the tokenizer with its added tokens, and the new rows' initial values.

    The new rows are stored because an adapter only loads onto a base resized the same way: see
    :func:`load_adapter` for the documented resize. The folder is written under a temporary name
    and renamed into place, so a kill never leaves half an adapter.
    """

    def write(tmp: Path) -> None:
        # the resized embedding matrices are not saved (they would be most of the file): the new
        # rows are stored apart and restored by the documented resize
        peft_model.save_pretrained(tmp, safe_serialization=True, save_embedding_layers=False)
        tokenizer.save_pretrained(tmp)
        if new_tokens:
            rows = _base_embedding_weight(peft_model)[list(new_tokens.values())]
            save_file({"rows": rows.detach().float().contiguous()}, str(tmp / NEW_TOKEN_ROWS))
        meta = {"new_tokens": new_tokens, "base_model": base, "vocab_size": len(tokenizer)}
        (tmp / ADAPTER_META).write_text(json.dumps(meta, indent=2))

    atomic_folder(folder, write, marker=ADAPTER_META, replace=True)


def _base_embedding_weight(peft_model: Any) -> torch.Tensor:
    """The base model's embedding matrix, without the trainable-token delta of peft."""
    embed = peft_model.get_base_model().get_input_embeddings()
    for attr in ("token_adapter", "original_module"):
        inner = getattr(embed, attr, None)
        if inner is not None and hasattr(inner, "base_layer"):
            return inner.base_layer.weight
    return getattr(embed, "base_layer", embed).weight


def resize_and_restore_rows(model: Any, tokenizer: Any, folder: Path) -> None:
    """The documented resize: grow the embeddings to the adapter's tokenizer and restore the new rows."""
    meta = json.loads((folder / ADAPTER_META).read_text())
    resize_for_tokenizer(model, tokenizer)
    ids = list(meta["new_tokens"].values())
    if ids:
        rows = load_file(str(folder / NEW_TOKEN_ROWS))["rows"]
        weight = model.get_input_embeddings().weight
        if rows.shape[1] != weight.shape[1]:
            raise DeliaError(
                f"{folder}: the adapter does not match this base model (embedding width {rows.shape[1]} "
                f"vs {weight.shape[1]}); pass the model= the adapter was trained on"
            )
        with torch.no_grad():
            weight[ids] = rows.to(weight.dtype)


def load_adapter(folder: str | Path, model_cfg: DictConfig, cache_dir: str | Path) -> tuple[Any, Any]:
    """Load base + adapter from ``folder``: base model, tokenizer from the adapter, resize, PeftModel."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not (folder / ADAPTER_META).is_file():
        raise DeliaError(f"{folder}: no {ADAPTER_META}; this is not an adapter folder written by delia-train")
    model, _ = load_base(model_cfg, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "right"
    resize_and_restore_rows(model, tokenizer, folder)
    try:
        peft_model = PeftModel.from_pretrained(model, folder)
    except (RuntimeError, ValueError) as err:
        raise DeliaError(
            f"{folder}: the adapter does not match model={model_cfg.name} ({str(err)[:200]})"
        ) from err
    peft_model.eval()
    return peft_model, tokenizer
