"""Representation analysis: how close the new token's hidden state is to the description's key words.

The paper (arXiv 2408.10841) measures, at chosen layers, the distance between the hidden state of the
new token (``<sep>``) and the mean hidden state of the prior description's key words ("json",
"thought"), each encoded in the same neutral context. DELIA brings the distance below the baselines.

- :func:`token_hidden_states`: a word's mean hidden state per layer, in a context such as
  ``"The answer uses the {word} format."``;
- :func:`representation_distances`: L2 and cosine distance per layer between a token and the mean of
  the keywords, as ``{"repr/l2_layer{L}": ..., "repr/cos_layer{L}": ...}``;
- :func:`representation_report`: those, relative L2 (L2 over the key words' mean norm: *not* scale-free,
  its divisor barely moves, so it ranks as L2 does), and the scale-free measure the verdict reads,
  ``repr/pct_layer{L}``: the share of :data:`REFERENCE_WORDS` vocabulary words, each in the same context,
  that lie closer to the key words' centroid than the new token does (0: nearer than every word; about
  0.5: as near as a typical word). A rank, so a change of scale of the hidden states does not move it.
  (Chosen as the verdict's measure, at layer 1, before any run measured it.)
- :class:`delia.callbacks.representation.RepresentationTracker` logs those distances over training.

``hidden_states[k]`` is the output of decoder layer ``k``; index 0 is the embedding output (and in
transformers the last index has the final norm applied).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

from delia.model.generate import evaluating

log = logging.getLogger(__name__)

DEFAULT_CONTEXT = "The answer uses the {word} format."
PLACEHOLDER = "{word}"


def default_layers(num_layers: int) -> list[int]:
    """Layers 1 and 2 (the paper's), the middle layer and the last layer, sorted and deduplicated.

    Only decoder layers that exist (``1..num_layers``) are kept, so a 1-layer model gets ``[1]``.
    """
    if num_layers < 1:
        raise ValueError(f"num_layers={num_layers}: a decoder has at least one layer")
    wanted = {1, 2, num_layers // 2, num_layers}
    return sorted(k for k in wanted if 1 <= k <= num_layers)


def _common_prefix(a: list[int], b: list[int]) -> int:
    """The number of leading ids ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def split_context(context: str) -> tuple[str, str]:
    """The text before and after the one ``{word}`` placeholder of ``context``."""
    if context.count(PLACEHOLDER) != 1:
        raise ValueError(f"context {context!r} must hold the placeholder {PLACEHOLDER} exactly once")
    before, after = context.split(PLACEHOLDER)
    return before, after


def word_span(tokenizer: Any, word: str, context: str = DEFAULT_CONTEXT) -> tuple[list[int], int, int]:
    """Token ids of ``context`` with ``word`` filled in, and the half-open span ``[start, end)`` of the word.

    The span comes from encoding the text before the word and that text plus the word: where each
    stops agreeing with the full encoding marks the word's first and last token. This is safe
    against whitespace a tokenizer attaches to the next token (``"the "`` + ``"json"`` becomes
    ``"Ġthe", "Ġjson"``, while ``"the "`` alone ends in ``"Ġ"``), and a token that merges the
    word with its neighbour counts as part of the word.
    """
    if not word:
        raise ValueError("the word to locate is empty")
    before, after = split_context(context)
    ids = tokenizer.encode(before + word + after, add_special_tokens=False)
    start = _common_prefix(tokenizer.encode(before, add_special_tokens=False), ids)
    with_word = tokenizer.encode(before + word, add_special_tokens=False)
    end = _common_prefix(with_word, ids)
    if end < len(with_word):  # the word's last token merged with the text after it
        end += 1
    if end <= start:
        raise ValueError(f"could not locate {word!r} in the tokenization of {context!r}")
    return ids, start, end


def _device(model: torch.nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


def decoder_layers(model: Any) -> torch.nn.ModuleList:
    """The decoder layers of a transformers causal LM (also under a PeftModel)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    n = num_hidden_layers(model)
    for module in base.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == n:
            return module
    raise ValueError(f"no list of {n} decoder layers found in {type(base).__name__}")


@contextmanager
def _record_layers(model: Any, stop_after: int | None = None) -> Iterator[dict[int, torch.Tensor]]:
    """Record the embedding output (index 0) and each decoder layer's output (index k) by forward hooks.

    Hooks of our own rather than ``output_hidden_states``: transformers records those with hooks that
    do not survive pickling (a ddp_spawn rank has none), and it applies the final norm to the last entry.
    ``stop_after``: raise :class:`_Enough` once that layer has run (the caller catches it).
    """
    recorded: dict[int, torch.Tensor] = {}

    def keep(index: int) -> Any:
        def hook(module: torch.nn.Module, args: Any, output: Any) -> None:
            recorded[index] = output[0] if isinstance(output, tuple) else output
            if index == stop_after:
                raise _Enough

        return hook

    handles = [model.get_input_embeddings().register_forward_hook(keep(0))]
    handles += [
        layer.register_forward_hook(keep(k)) for k, layer in enumerate(decoder_layers(model), start=1)
    ]
    try:
        yield recorded
    finally:
        for handle in handles:
            handle.remove()


def token_hidden_states(
    model: Any, tokenizer: Any, word: str, layers: list[int], context: str = DEFAULT_CONTEXT
) -> dict[int, torch.Tensor]:
    """The mean hidden state over ``word``'s tokens in ``context``, per layer (float32, 1-D, on CPU).

    Index 0 is the embedding output, index k the output of decoder layer k. Works on a transformers
    causal LM and on a peft ``PeftModel`` wrapping one; the model runs once, without gradients, in eval
    mode (each submodule's previous mode is restored afterwards).
    """
    ids, start, end = word_span(tokenizer, word, context)
    input_ids = torch.tensor([ids], dtype=torch.long, device=_device(model))
    with evaluating(model), torch.no_grad(), _record_layers(model) as hidden:
        model(input_ids=input_ids, use_cache=False)
    bad = [k for k in layers if k not in hidden]
    if bad:
        raise ValueError(f"layers {bad} do not exist: the model has layers 0..{len(hidden) - 1}")
    return {k: hidden[k][0, start:end].float().mean(dim=0).cpu() for k in layers}


def num_hidden_layers(model: Any) -> int:
    """The number of decoder layers of a transformers model or of the base model under a PeftModel."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = base.config
    if hasattr(config, "get_text_config"):
        config = config.get_text_config()
    return int(config.num_hidden_layers)


def _mean_states(
    model: Any, tokenizer: Any, words: list[str], layers: list[int], context: str
) -> dict[int, torch.Tensor]:
    """The mean over ``words`` of their per-layer hidden states."""
    states = [token_hidden_states(model, tokenizer, word, layers, context) for word in words]
    return {k: torch.stack([s[k] for s in states]).mean(dim=0) for k in layers}


def representation_distances(
    model: Any,
    tokenizer: Any,
    token: str,
    keywords: list[str],
    layers: list[int] | None = None,
    context: str = DEFAULT_CONTEXT,
) -> dict[str, float]:
    """L2 and cosine distance (``1 - cos_sim``) per layer between ``token`` and the keywords' mean.

    Returns ``{"repr/l2_layer{L}": ..., "repr/cos_layer{L}": ...}``; ``layers=None`` means
    :func:`default_layers` of the model's depth.
    """
    if not keywords:
        raise ValueError("representation_distances needs at least one keyword")
    if layers is None:
        layers = default_layers(num_hidden_layers(model))
    source = token_hidden_states(model, tokenizer, token, layers, context)
    target = _mean_states(model, tokenizer, keywords, layers, context)
    return layer_distances(source, target)


PAPER_LAYERS = (1, 2)  # where the per-keyword, description-context and percentile measures are reported
REFERENCE_WORDS = 2048  # vocabulary words the percentile ranks the new token among


class _Enough(Exception):
    """Raised by a forward hook once the deepest layer wanted has run: the rest of the model is skipped."""


def reference_words(tokenizer: Any, exclude: set[str], n: int = REFERENCE_WORDS) -> list[str]:
    """``n`` vocabulary words, evenly spaced in alphabetical order: tokens that are a space and 3 or more
    ASCII letters (``" json"``), so each reads as a word in the context; ``exclude``d words left out. The
    same words for every run of a tokenizer."""
    vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    marker = re.compile(r"^(?:\u0120|\u2581)([A-Za-z]{3,})$")  # GPT-2's and SentencePiece's word start
    words = sorted({m.group(1) for t in vocab if t and (m := marker.match(t)) and m.group(1) not in exclude})
    if len(words) <= n:
        return words
    return [words[i * len(words) // n] for i in range(n)]


def word_states(
    model: Any, tokenizer: Any, words: list[str], layers: list[int], context: str, batch_size: int = 256
) -> dict[int, torch.Tensor]:
    """:func:`token_hidden_states` for many words at once: per layer a ``(len(words), hidden)`` matrix.

    Batched with right padding (a causal model's states before the padding do not see it); the forward
    stops after the deepest layer wanted."""
    spans = [word_span(tokenizer, word, context) for word in words]
    deepest, device = max(layers), _device(model)
    rows: dict[int, list[torch.Tensor]] = {k: [] for k in layers}
    for start in range(0, len(spans), batch_size):
        chunk = spans[start : start + batch_size]
        width = max(len(ids) for ids, _, _ in chunk)
        ids = torch.full((len(chunk), width), int(tokenizer.pad_token_id or 0), dtype=torch.long)
        mask = torch.zeros_like(ids)
        for i, (row, _, _) in enumerate(chunk):
            ids[i, : len(row)], mask[i, : len(row)] = torch.tensor(row), 1
        with evaluating(model), torch.no_grad(), _record_layers(model, stop_after=deepest) as hidden:
            try:
                model(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            except _Enough:
                pass
        for k in layers:
            rows[k] += [hidden[k][i, a:b].float().mean(dim=0).cpu() for i, (_, a, b) in enumerate(chunk)]
    return {k: torch.stack(rows[k]) for k in layers}


def closer_share(token: torch.Tensor, centroid: torch.Tensor, reference: torch.Tensor) -> float:
    """The share of ``reference`` rows closer (L2) to ``centroid`` than ``token`` is: a rank, scale-free."""
    mine = torch.linalg.vector_norm(token - centroid)
    theirs = torch.linalg.vector_norm(reference - centroid, dim=1)
    return float((theirs < mine).float().mean())


def keyword_contexts(description: str, keywords: list[str]) -> dict[str, str]:
    """For each key word, the first line of the prior description that uses it, the word a placeholder.

    The synthetic context puts every word in the same neutral sentence; these put each key word where the
    description itself uses it (and the new token in its place), a second, less artificial reading.
    """
    lines = [line.strip().removeprefix("- ").strip() for line in description.splitlines()]
    contexts = {}
    for word in keywords:
        pattern = re.compile(rf"\b{re.escape(word)}\b", re.IGNORECASE)
        line = next((line for line in lines if pattern.search(line) and "{" not in line), None)
        if line is not None:
            contexts[word] = pattern.sub(PLACEHOLDER, line, count=1)
    return contexts


def representation_report(
    model: Any,
    tokenizer: Any,
    token: str,
    keywords: list[str],
    layers: list[int] | None = None,
    description: str | None = None,
) -> dict[str, float]:
    """Every representation measure of a run, per layer.

    - ``repr/l2_layer{L}``, ``repr/cos_layer{L}``: to the key words' centroid, synthetic context;
    - ``repr/rel_l2_layer{L}``: relative L2, that L2 over the key words' mean norm (not scale-free: the
      divisor is nearly the same in every run, so it ranks the runs as L2 does);
    - ``repr/pct_layer{L}`` (the paper's layers 1 and 2): the scale-free measure, the share of
      :func:`reference_words` closer to the centroid than the token (:func:`closer_share`);
    - ``repr/l2_layer{L}_{word}``: to each key word (the paper's layers 1 and 2);
    - ``repr/desc_l2_layer{L}``, ``repr/desc_cos_layer{L}``, ``repr/desc_rel_l2_layer{L}``: each key word
      and the token in the description's own line for that word, averaged over the words (layers 1, 2).
    """
    layers = layers or default_layers(num_hidden_layers(model))
    source = token_hidden_states(model, tokenizer, token, layers, DEFAULT_CONTEXT)
    states = {word: token_hidden_states(model, tokenizer, word, layers, DEFAULT_CONTEXT) for word in keywords}
    centroid = {k: torch.stack([s[k] for s in states.values()]).mean(dim=0) for k in layers}
    result = layer_distances(source, centroid)
    paper = [k for k in layers if k in PAPER_LAYERS]
    for k in layers:
        norm = torch.stack([torch.linalg.vector_norm(s[k]) for s in states.values()]).mean()
        result[f"repr/rel_l2_layer{k}"] = result[f"repr/l2_layer{k}"] / max(float(norm), 1e-12)
    for k in paper:
        for word, state in states.items():
            result[f"repr/l2_layer{k}_{word}"] = torch.linalg.vector_norm(source[k] - state[k]).item()
    if paper:
        words = reference_words(tokenizer, exclude={w.strip() for w in keywords})
        reference = word_states(model, tokenizer, words, paper, DEFAULT_CONTEXT)
        for k in paper:
            result[f"repr/pct_layer{k}"] = closer_share(source[k], centroid[k], reference[k])
    if description and paper:
        result.update(_description_context(model, tokenizer, token, keywords, paper, description))
    return result


def _description_context(
    model: Any, tokenizer: Any, token: str, keywords: list[str], layers: list[int], description: str
) -> dict[str, float]:
    per_word: list[dict[str, float]] = []
    for word, context in keyword_contexts(description, keywords).items():
        mine = token_hidden_states(model, tokenizer, token, layers, context)
        theirs = token_hidden_states(model, tokenizer, word, layers, context)
        distances = layer_distances(mine, theirs)
        for k in layers:
            norm = max(float(torch.linalg.vector_norm(theirs[k])), 1e-12)
            distances[f"repr/rel_l2_layer{k}"] = distances[f"repr/l2_layer{k}"] / norm
        per_word.append(distances)
    if not per_word:
        return {}
    return {
        name.replace("repr/", "repr/desc_"): sum(d[name] for d in per_word) / len(per_word)
        for name in per_word[0]
    }


def with_step0(final: dict[str, float], step0: dict[str, float]) -> dict[str, float]:
    """The final measures plus, for each, its value before training (``_step0``) and the change."""
    out = dict(final)
    for name, value in final.items():
        if name in step0:
            out[f"{name}_step0"] = step0[name]
            out[f"{name}_change"] = value - step0[name]
    return out


def layer_distances(source: dict[int, torch.Tensor], target: dict[int, torch.Tensor]) -> dict[str, float]:
    """``repr/l2_layer{L}`` and ``repr/cos_layer{L}`` (``1 - cosine similarity``) for each layer of ``source``."""
    result: dict[str, float] = {}
    for k in source:
        result[f"repr/l2_layer{k}"] = torch.linalg.vector_norm(source[k] - target[k]).item()
        result[f"repr/cos_layer{k}"] = 1.0 - F.cosine_similarity(source[k], target[k], dim=0).item()
    return result
