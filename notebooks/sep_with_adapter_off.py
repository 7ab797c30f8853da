"""Which trained part moves a new token's hidden state: the LoRA weights or the token's own row.

For each finished run (a ``delia-train`` run dir with ``adapter/``), loads base + adapter as
``delia-eval`` does and prints the norm of the new token's hidden state and of each key word's, per
layer, in four models: as trained; LoRA on with the row at its initial value; LoRA off with the trained
row; and neither (the step-0 model). README: "Representation against the number of examples".

    python notebooks/sep_with_adapter_off.py outputs/multirun/samples_cpu/n64_delia/2 [more run dirs]
"""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import OmegaConf
from safetensors.torch import load_file

from delia.eval.representation import DEFAULT_CONTEXT, token_hidden_states
from delia.model.adapter import NEW_TOKEN_ROWS, _base_embedding_weight, load_adapter

LAYERS = [1, 2, 15, 30]


def hidden_norms(model: Any, tokenizer: Any, words: list[str]) -> dict[str, list[float]]:
    """Each word's hidden-state norm at LAYERS, in the representation measure's context."""
    states = {w: token_hidden_states(model, tokenizer, w, LAYERS, DEFAULT_CONTEXT) for w in words}
    return {w: [round(float(s[k].norm()), 1) for k in LAYERS] for w, s in states.items()}


@contextlib.contextmanager
def row_set_to(model: Any, row: int, values: torch.Tensor) -> Iterator[None]:
    """Hold the new token's row at ``values``: in peft's trainable-token copy and in the base matrix."""
    slots: list[tuple[torch.Tensor, int]] = []
    for module in model.modules():
        for name, delta in getattr(module, "trainable_tokens_delta", {}).items():
            indices = module.token_indices[name]
            if row in indices:
                slots.append((delta, indices.index(row)))
    slots.append((_base_embedding_weight(model), row))
    saved = [tensor[i].detach().clone() for tensor, i in slots]
    with torch.no_grad():
        for tensor, i in slots:
            tensor[i] = values.to(tensor.dtype)
    try:
        yield
    finally:
        with torch.no_grad():
            for (tensor, i), old in zip(slots, saved, strict=True):
                tensor[i] = old


def report(run: Path, cache_dir: str) -> None:
    cfg = OmegaConf.load(run / "config.yaml")
    model, tokenizer = load_adapter(run / "adapter", cfg.model, cache_dir)
    token, keywords = str(cfg.dataset.special_token), list(cfg.representation.keywords)
    row = int(tokenizer.convert_tokens_to_ids(token))
    trained = model.get_input_embeddings().weight[row].detach().clone()
    initial = load_file(str(run / "adapter" / NEW_TOKEN_ROWS))["rows"][0]
    median = model.get_input_embeddings().weight.norm(dim=1).median()
    print(
        f"{run}: {token} row norm {trained.norm():.3f} trained, {initial.norm():.3f} initial; vocab median {median:.3f}"
    )
    print(f"  hidden-state norm at layers {LAYERS}")
    cases = (
        ("as trained", False, trained),
        ("LoRA, initial row", False, initial),
        ("trained row, no LoRA", True, trained),
        ("step 0", True, initial),
    )
    for label, lora_off, values in cases:
        lora = model.disable_adapter() if lora_off else contextlib.nullcontext()
        with row_set_to(model, row, values), lora:
            for word, norms in hidden_norms(model, tokenizer, [token, *keywords]).items():
                print(f"  {label:21s} {word:8s} {norms}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished delia-train run dirs")
    parser.add_argument("--cache-dir", default=os.environ.get("DELIA_CACHE_DIR", "outputs/cache"))
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    for run in args.runs:
        report(run, args.cache_dir)


if __name__ == "__main__":
    main()
