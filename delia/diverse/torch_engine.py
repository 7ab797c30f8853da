"""Self-sampling with our own Llama decoder in torch (``diverse.sampler=torch_engine``).

Why it exists: on a CPU, transformers ``generate`` sorts the whole vocabulary for top-p at every step
(at 64 rows, about as long as the model's own step here), keeps decoding rows that have ended until the
longest one ends, and grows its KV cache by concatenation. This decoder:

- preallocates one KV-cache row per slot (per layer: slots x kv heads x (longest prompt + max_new_tokens)
  x head dim), in float32 whatever the weights' dtype, and attends in float32: on a CPU, SDPA with one
  query per row is 3x to 7x slower in bfloat16 than in float32 (docs/performance.md), and the keys and
  values computed in bfloat16 are stored exactly;
- prefills the prefix that every prompt shares (the chat template's system turn) once, into a spare row
  that each new row copies; a new prompt's own tokens are prefilled alone into a free row, then every
  active row decodes one token a step (continuous batching: a row that ends frees its slot for the next
  prompt at once);
- keeps the active rows at the front of the cache (an ended row is overwritten by the last active one), so
  a step reads one contiguous slice, and reads it only up to the longest active row;
- computes logits at the last position only;
- runs on the CPU, on copies of the weights (a model on a GPU is read, not moved: use vllm there);
- draws top-p exactly without sorting the vocabulary (:func:`nucleus_draw`).

The layer math is Hugging Face's Llama: RMSNorm in float32, the rotary tables of the model's own rotary
module, grouped-query attention by torch's ``scaled_dot_product_attention``, SiLU MLP; its logits match the
model's (tests/unit/diverse/test_torch_engine.py). Sampling settings as the other backends: temperature, then top-p,
then a draw from the renormalised nucleus; no top-k, min-p or repetition penalty; a reply ends at any
end-of-turn token of the chat template or at ``max_new_tokens``.

Deterministic given the seeds: prompt ``k`` draws from its own generator seeded with ``seeds[k]``, and
prompts are admitted in their order. Which rows share a step can change a row's logits in the last bits,
so the same prompts, seeds and slots give the same replies.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig

from delia.diverse.backend import EngineSampler
from delia.infra.errors import DeliaError
from delia.infra.precision import cpu_computes_bfloat16

log = logging.getLogger(__name__)

# in the cache key: a change to this file's numerics gets new samples. 3: bfloat16 attends in float32 (the
# float32 engine computes what version 2 did, bit for bit)
ENGINE_VERSION = 3
DEFAULTS = {"dtype": "auto", "slots": 64}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}
# top-p reads its nucleus off this many most likely tokens; a row whose nucleus is wider is sorted in full
CANDIDATES = 128
FIX = "use diverse.sampler=transformers or llamacpp"


def options(cfg: DictConfig) -> dict[str, Any]:
    """``diverse.torch_engine`` over the defaults; dtype ``auto`` resolved for this machine."""
    merged = {**DEFAULTS, **dict(cfg.get("torch_engine") or {})}
    return {"dtype": resolve_dtype(str(merged["dtype"])), "slots": int(merged["slots"])}


def resolve_dtype(dtype: str) -> str:
    """``auto``: bfloat16 where oneDNN computes it on this CPU (its samples were not measurably worse, and it
    was the fastest: docs/performance.md, Self-sampling engines), else float32 (bfloat16 without hardware support is
    emulated, slower than float32). The resolved dtype is what the cache key holds."""
    if dtype != "auto":
        return dtype
    return "bfloat16" if onednn_bfloat16() else "float32"


def check_supported(config: Any) -> None:
    """Refuse, in one line, a model whose layers are not the Llama layers this decoder computes."""
    arch = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    if getattr(config, "model_type", None) != "llama":
        raise DeliaError(
            f"diverse.sampler=torch_engine decodes Llama-architecture models only, not {arch}: {FIX}"
        )
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise DeliaError(f"diverse.sampler=torch_engine does not decode Llama layers with biases: {FIX}")
    if getattr(config, "hidden_act", "silu") != "silu":
        raise DeliaError(f"diverse.sampler=torch_engine computes a SiLU MLP, not {config.hidden_act}: {FIX}")


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Llama's RMSNorm: normalised in float32, scaled in the weights' dtype."""
    x32 = x.float()
    x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)
    return weight * x32.to(x.dtype)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary embedding in Hugging Face's half-split layout (``x``: ... x heads x head dim)."""
    half = x.shape[-1] // 2
    return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin


def onednn_bfloat16() -> bool:
    """Whether this torch can pack bfloat16 weights for oneDNN's matmul on this CPU (the same detection
    as ``trainer.precision=auto``)."""
    return cpu_computes_bfloat16()


@dataclass(frozen=True)
class Projection:
    """``x @ weight.T``. A bfloat16 weight is packed once into oneDNN's layout where torch can: the same
    oneDNN matmul as ``F.linear`` (bitwise equal here), without re-laying the weight out at every call
    (30% to 48% less time a call at 1 to 64 rows on the 2-core Xeon, one timing)."""

    weight: torch.Tensor
    packed: torch.Tensor | None = None

    @classmethod
    def of(cls, weight: torch.Tensor, dtype: torch.dtype) -> Projection:
        weight = weight.detach().to("cpu", dtype).contiguous()
        if dtype != torch.bfloat16 or not onednn_bfloat16():
            return cls(weight)
        return cls(weight, torch.ops.mkldnn._reorder_linear_weight(weight, None))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight)
        return torch.ops.mkldnn._linear_pointwise(x, self.packed, None, "none", [], "")


@dataclass(frozen=True)
class Layer:
    """One decoder layer's weights, q/k/v and gate/up fused into one projection each."""

    attn_norm: torch.Tensor
    qkv: Projection
    out: Projection
    mlp_norm: torch.Tensor
    gate_up: Projection
    down: Projection


def _layer(module: Any, dtype: torch.dtype) -> Layer:
    attn, mlp = module.self_attn, module.mlp
    return Layer(
        attn_norm=module.input_layernorm.weight.detach().to("cpu", dtype),
        qkv=Projection.of(torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]), dtype),
        out=Projection.of(attn.o_proj.weight, dtype),
        mlp_norm=module.post_attention_layernorm.weight.detach().to("cpu", dtype),
        gate_up=Projection.of(torch.cat([mlp.gate_proj.weight, mlp.up_proj.weight]), dtype),
        down=Projection.of(mlp.down_proj.weight, dtype),
    )


@dataclass
class KVCache:
    """Per layer, keys and values: slots x kv heads x positions x head dim (float32)."""

    keys: list[torch.Tensor]
    values: list[torch.Tensor]

    @classmethod
    def empty(
        cls, layers: int, slots: int, heads: int, positions: int, dim: int, dtype: torch.dtype
    ) -> KVCache:
        shape = (slots, heads, positions, dim)
        return cls(
            [torch.zeros(shape, dtype=dtype) for _ in range(layers)],
            [torch.zeros(shape, dtype=dtype) for _ in range(layers)],
        )

    def move(self, source: int, target: int, length: int) -> None:
        """Copy row ``source``'s first ``length`` positions onto row ``target``."""
        for cache in (*self.keys, *self.values):
            cache[target, :, :length] = cache[source, :, :length]


class Decoder:
    """A Llama model's weights laid out for decoding, with a prefill (one prompt) and a decode step (every
    active row, one token each)."""

    def __init__(self, model: Any, dtype: str) -> None:
        config = model.config
        check_supported(config)
        dtype = resolve_dtype(dtype)
        if dtype not in DTYPES:
            raise DeliaError(
                f"diverse.torch_engine.dtype={dtype!r} is unknown: use auto, {' or '.join(DTYPES)}"
            )
        self.dtype = DTYPES[dtype]
        self.heads, self.kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = getattr(config, "head_dim", None) or config.hidden_size // self.heads
        self.eps = float(config.rms_norm_eps)
        self.rotary = model.model.rotary_emb
        self.layers = [_layer(module, self.dtype) for module in model.model.layers]
        self.embed = model.get_input_embeddings().weight.detach().to("cpu", self.dtype)
        self.head = Projection.of(model.get_output_embeddings().weight, self.dtype)
        self.final_norm = model.model.norm.weight.detach().to("cpu", self.dtype)
        self.split = [
            self.heads * self.head_dim,
            self.kv_heads * self.head_dim,
            self.kv_heads * self.head_dim,
        ]
        self.cos = self.sin = torch.empty(0)

    def cache(self, slots: int, positions: int) -> KVCache:
        """An empty cache, and rotary tables for ``positions`` positions."""
        device = self.rotary.inv_freq.device  # the model's; the decoder itself runs on the CPU
        cos, sin = self.rotary(
            torch.zeros(1, dtype=self.dtype, device=device), torch.arange(positions, device=device)[None]
        )
        self.cos, self.sin = cos[0].to("cpu", self.dtype), sin[0].to("cpu", self.dtype)
        return KVCache.empty(len(self.layers), slots, self.kv_heads, positions, self.head_dim, torch.float32)

    def _qkv(
        self, x: torch.Tensor, layer: Layer, cos: torch.Tensor, sin: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Queries, keys (both rotated) and values of ``x`` (tokens x hidden): tokens x heads x head dim."""
        q, k, v = layer.qkv(rms_norm(x, layer.attn_norm, self.eps)).split(self.split, -1)
        q = rotate(q.unflatten(-1, (self.heads, self.head_dim)), cos, sin)
        k = rotate(k.unflatten(-1, (self.kv_heads, self.head_dim)), cos, sin)
        return q, k, v.unflatten(-1, (self.kv_heads, self.head_dim))

    def _finish_layer(self, x: torch.Tensor, attended: torch.Tensor, layer: Layer) -> torch.Tensor:
        """The attention output projected and added, then the MLP block."""
        x = x + layer.out(attended.flatten(-2))
        gate, up = layer.gate_up(rms_norm(x, layer.mlp_norm, self.eps)).chunk(2, -1)
        return x + layer.down(F.silu(gate) * up)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(rms_norm(x, self.final_norm, self.eps)).float()

    @torch.inference_mode()
    def prefill(self, ids: list[int], row: int, cache: KVCache, start: int = 0) -> torch.Tensor:
        """Write a prompt's keys and values into cache row ``row``; the logits after its last token.

        ``start``: the row already holds the keys and values of ``ids[:start]`` (a shared prefix)."""
        n = len(ids)
        x = self.embed[torch.tensor(ids[start:])]
        cos, sin = self.cos[start:n, None], self.sin[start:n, None]
        # query i (position start + i) sees positions up to its own: causal, aligned to the last key
        mask = None if start == 0 else torch.arange(start, n)[:, None] >= torch.arange(n)[None, :]
        for layer, keys, values in zip(self.layers, cache.keys, cache.values, strict=True):
            q, k, v = self._qkv(x, layer, cos, sin)
            keys[row, :, start:n], values[row, :, start:n] = k.transpose(0, 1), v.transpose(0, 1)
            attended = F.scaled_dot_product_attention(
                q.transpose(0, 1).float(),
                keys[row, :, :n],
                values[row, :, :n],
                attn_mask=mask,
                is_causal=mask is None,
                enable_gqa=True,
            )
            x = self._finish_layer(x, attended.transpose(0, 1).to(self.dtype), layer)
        return self._logits(x[-1:])[0]

    @torch.inference_mode()
    def decode(self, tokens: torch.Tensor, positions: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """One step for cache rows ``0..len(tokens)-1``: row ``r`` feeds ``tokens[r]`` at ``positions[r]``."""
        rows = len(tokens)
        span = int(positions.max()) + 1  # read each row's cache only up to the longest active row
        # a row sees its own positions up to the new one; longer rows' positions are hidden from it
        visible = (torch.arange(span) <= positions[:, None])[:, None, None, :]
        x = self.embed[tokens]
        cos, sin = self.cos[positions, None], self.sin[positions, None]
        index = torch.arange(rows)
        for layer, keys, values in zip(self.layers, cache.keys, cache.values, strict=True):
            q, k, v = self._qkv(x, layer, cos, sin)
            keys[index, :, positions], values[index, :, positions] = k.float(), v.float()
            # one query per row; the cache slices are read in place (no copy, kv heads shared by groups)
            attended = F.scaled_dot_product_attention(
                q[:, :, None].float(),
                keys[:rows, :, :span],
                values[:rows, :, :span],
                visible,
                enable_gqa=True,
            )
            x = self._finish_layer(x, attended[:, :, 0].to(self.dtype), layer)
        return self._logits(x)


def _draw_sorted(
    probs: torch.Tensor, ids: torch.Tensor, top_p: float, uniforms: torch.Tensor
) -> torch.Tensor:
    """Per row of ``probs`` sorted descending (``ids``: their token ids): a token of the nucleus, drawn with
    ``uniforms`` from the nucleus renormalised. A token is in the nucleus when the mass before it is below
    ``top_p`` (the smallest set of most likely tokens whose mass reaches ``top_p``)."""
    kept = torch.where(probs.cumsum(-1) - probs < top_p, probs, 0.0)
    cdf = kept.cumsum(-1)
    pick = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True)
    return ids.gather(-1, pick.clamp(max=probs.shape[-1] - 1)).squeeze(-1)


def nucleus_draw(
    logits: torch.Tensor, temperature: float, top_p: float, uniforms: torch.Tensor
) -> torch.Tensor:
    """One token per row: temperature, then top-p, then a draw with ``uniforms`` (one in [0, 1) per row).

    Exact without sorting the vocabulary: the nucleus is read off the :data:`CANDIDATES` most likely tokens
    when their mass reaches ``top_p``; the other rows are sorted in full. ``top_p`` 1 draws from every token.
    """
    probs = torch.softmax(logits.float() / temperature, -1)
    if top_p >= 1.0:
        return _draw_sorted(probs, torch.arange(probs.shape[-1]).expand_as(probs), 2.0, uniforms)
    top, ids = probs.topk(min(CANDIDATES, probs.shape[-1]), -1)
    tokens = _draw_sorted(top, ids, top_p, uniforms)
    wide = top.sum(-1) < top_p
    if wide.any():
        full, full_ids = probs[wide].sort(-1, descending=True)
        tokens[wide] = _draw_sorted(full, full_ids, top_p, uniforms[wide])
    return tokens


def shared_prefix(prompts: list[list[int]]) -> list[int]:
    """The leading tokens every prompt shares (the chat template's system turn), leaving each prompt at
    least one token of its own to prefill."""
    first, n = prompts[0], min(map(len, prompts)) - 1
    for i in range(n):
        if any(prompt[i] != first[i] for prompt in prompts):
            return list(first[:i])
    return list(first[:n])


@dataclass
class _Row:
    """One sequence in the cache: its prompt index, its generator, tokens in the cache, tokens sampled."""

    k: int
    generator: torch.Generator
    length: int
    out: list[int] = field(default_factory=list)


class TorchEngine:
    """:class:`Decoder` with continuous batching over ``slots`` cache rows."""

    def __init__(self, model: Any, dtype: str, slots: int) -> None:
        self.decoder, self.slots = Decoder(model, dtype), slots

    def run(
        self, prompts: list[list[int]], seeds: list[int], settings: dict[str, Any]
    ) -> Iterator[tuple[int, list[int], bool]]:
        """Yield ``(k, new token ids, stopped at an end-of-turn token)`` for every prompt, as each ends."""
        if not prompts:
            return
        max_new = int(settings["max_new_tokens"])
        slots = min(self.slots, len(prompts))
        shared = shared_prefix(prompts) if len(prompts) > 1 else []
        # one spare row after the slots holds the shared prefix, prefilled once and copied into each new row
        cache = self.decoder.cache(slots + bool(shared), max(map(len, prompts)) + max_new)
        if shared:
            self.decoder.prefill(shared, slots, cache)
        rows: list[_Row] = []
        waiting = iter(range(len(prompts)))
        while True:
            for k in waiting if len(rows) < self.slots else ():
                rows.append(_Row(k, torch.Generator().manual_seed(int(seeds[k])), len(prompts[k])))
                if shared:
                    cache.move(slots, len(rows) - 1, len(shared))
                logits = self.decoder.prefill(list(prompts[k]), len(rows) - 1, cache, len(shared))[None]
                yield from self._step_done(rows, [len(rows) - 1], logits, settings, cache)
                if len(rows) == self.slots:
                    break
            if not rows:
                return
            tokens = torch.tensor([row.out[-1] for row in rows])
            positions = torch.tensor([row.length for row in rows])
            logits = self.decoder.decode(tokens, positions, cache)
            for row in rows:
                row.length += 1
            yield from self._step_done(rows, list(range(len(rows))), logits, settings, cache)

    def _step_done(
        self,
        rows: list[_Row],
        which: list[int],
        logits: torch.Tensor,
        settings: dict[str, Any],
        cache: KVCache,
    ) -> Iterator[tuple[int, list[int], bool]]:
        """Sample the next token of rows ``which``; yield and retire those that ended."""
        uniforms = torch.stack([torch.rand((), generator=rows[r].generator) for r in which])
        tokens = nucleus_draw(logits, float(settings["temperature"]), float(settings["top_p"]), uniforms)
        ended = []
        for r, token in zip(which, tokens.tolist(), strict=True):
            rows[r].out.append(token)
            stopped = token in settings["stop_ids"]
            if stopped or len(rows[r].out) >= int(settings["max_new_tokens"]):
                ended.append(r)
                yield rows[r].k, rows[r].out, stopped
        for r in sorted(ended, reverse=True):  # the last row takes an ended row's place (rows after r live)
            last = len(rows) - 1
            if r != last:
                cache.move(last, r, rows[last].length)
                rows[r] = rows[last]
            rows.pop()

    def close(self) -> None:
        """Nothing to free beyond Python's own references."""


class TorchEngineSampler(EngineSampler):
    """``diverse.sampler=torch_engine``: the loaded model, decoded by :class:`TorchEngine`."""

    def __init__(self, model: Any, tokenizer: Any, cfg: DictConfig) -> None:
        opts = options(cfg)
        super().__init__(
            TorchEngine(model, opts["dtype"], opts["slots"]), tokenizer, cfg, f"torch {opts['dtype']}"
        )
        log.info("torch engine sampler: %s, %d slots", opts["dtype"], opts["slots"])
