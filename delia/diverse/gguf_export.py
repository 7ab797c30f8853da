"""Write a loaded transformers Llama as a GGUF file for llama.cpp (``diverse.sampler=llamacpp``).

The file holds the weights and the architecture, no vocabulary (``tokenizer.ggml.model = none``): DELIA
tokenizes the prompts and decodes the replies with the model's own Hugging Face tokenizer, so llama.cpp
only ever sees token ids. That is why any Llama-architecture model converts, whatever its tokenizer.

Compute types (``diverse.llamacpp.compute_type``): ``f32``, ``bf16``, ``f16``, ``q8_0`` and ``q4_1``.
``bf16`` rounds every matrix to bfloat16 (round to nearest even, as torch does); llama.cpp computes it
with AVX512-BF16 instructions where the CPU has them. ``q4_1`` writes
the linear layers as Q4_1 and the token embedding as Q8_0, the layout of the embedded
SmolLM2-135M-Instruct.Q4_1.gguf: since our float32 copy is that file de-quantized, converting it back
gives the embedded file's own quantized weights, byte for byte (checked in tests/unit/diverse/test_llamacpp.py).
Queries/keys are permuted from Hugging Face's rotate-half layout to GGUF's interleaved rotary layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from delia.infra.errors import DeliaError

COMPUTE_TYPES = ("f32", "bf16", "f16", "q8_0", "q4_1")
EXPORT_VERSION = 1  # bump when the written file changes: it is part of the converted model's cache key

_LAYER_NAMES = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
    "input_layernorm": "attn_norm",
    "post_attention_layernorm": "ffn_norm",
}
_TOP_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
FIX = "use diverse.sampler=transformers for this model"


def check_supported(config: Any) -> None:
    """Refuse, in one line, a model that this writer cannot express as a llama.cpp ``llama`` GGUF."""
    arch = (getattr(config, "architectures", None) or [type(config).__name__])[0]
    if getattr(config, "model_type", None) != "llama":
        raise DeliaError(
            f"diverse.sampler=llamacpp converts Llama-architecture models only, not {arch}: {FIX}"
        )
    scaling = getattr(config, "rope_scaling", None) or {}
    kind = scaling.get("rope_type", scaling.get("type", "default")) if isinstance(scaling, dict) else "?"
    if kind not in (None, "default"):
        raise DeliaError(f"diverse.sampler=llamacpp does not convert rope scaling {kind!r}: {FIX}")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise DeliaError(f"diverse.sampler=llamacpp does not convert Llama layers with biases: {FIX}")


def gguf_name(name: str) -> str:
    """The GGUF tensor name of a Hugging Face Llama parameter name."""
    if name in _TOP_NAMES:
        return _TOP_NAMES[name]
    parts = name.split(".")  # model.layers.<i>.<module>.<sub>.weight
    module = ".".join(parts[3:-1])
    if parts[:2] != ["model", "layers"] or module not in _LAYER_NAMES or parts[-1] != "weight":
        raise DeliaError(f"diverse.sampler=llamacpp: unexpected Llama parameter {name!r}: {FIX}")
    return f"blk.{parts[2]}.{_LAYER_NAMES[module]}.weight"


def rotary_interleave(weight: np.ndarray, heads: int) -> np.ndarray:
    """Rows of a q/k projection from rotate-half order (Hugging Face) to interleaved order (GGUF)."""
    rows = weight.shape[0]
    return (
        weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)
    )


def _tensor_type(name: str, array: np.ndarray, compute_type: str) -> Any:
    import gguf

    kinds = gguf.GGMLQuantizationType
    if array.ndim == 1:
        return kinds.F32  # norms stay float32, as in every llama.cpp file
    wanted = kinds[compute_type.upper()]  # each compute type is named after its GGML type
    if compute_type == "q4_1" and name == "model.embed_tokens.weight":
        wanted = kinds.Q8_0
    block = gguf.GGML_QUANT_SIZES[wanted][0]
    if array.shape[-1] % block:  # rows that do not split into quantization blocks stay 16-bit
        return kinds.F16
    return wanted


def _add_tensor(writer: Any, name: str, array: np.ndarray, compute_type: str) -> None:
    import gguf
    from gguf.quants import quantize

    kind = _tensor_type(name, array, compute_type)
    if kind == gguf.GGMLQuantizationType.F32:
        writer.add_tensor(gguf_name(name), array)
    elif kind == gguf.GGMLQuantizationType.F16:
        writer.add_tensor(gguf_name(name), array.astype(np.float16))
    else:
        writer.add_tensor(gguf_name(name), quantize(array, kind), raw_dtype=kind)


def _add_architecture(writer: Any, config: Any) -> None:
    heads = int(config.num_attention_heads)
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_context_length(int(config.max_position_embeddings))
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(heads)
    writer.add_head_count_kv(int(config.num_key_value_heads or heads))
    theta = getattr(config, "rope_theta", None) or (getattr(config, "rope_parameters", None) or {}).get(
        "rope_theta", 10000.0
    )
    writer.add_rope_freq_base(float(theta))
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_dimension_count(int(getattr(config, "head_dim", None) or config.hidden_size // heads))
    writer.add_vocab_size(int(config.vocab_size))
    writer.add_tokenizer_model("none")  # no vocabulary: llama.cpp gets and returns token ids only


def export_gguf(model: Any, path: Path, compute_type: str) -> None:
    """Write ``model`` (a transformers ``LlamaForCausalLM``) to ``path`` at ``compute_type``."""
    import gguf

    if compute_type not in COMPUTE_TYPES:
        raise DeliaError(
            f"diverse.llamacpp.compute_type={compute_type!r} is unknown: use {', '.join(COMPUTE_TYPES)}"
        )
    config = model.config
    check_supported(config)
    heads, kv_heads = (
        int(config.num_attention_heads),
        int(config.num_key_value_heads or config.num_attention_heads),
    )
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("delia-export")
    _add_architecture(writer, config)
    for name, tensor in model.state_dict().items():
        if name == "lm_head.weight" and getattr(config, "tie_word_embeddings", False):
            continue  # tied: llama.cpp reuses token_embd as the output layer
        array = tensor.detach().to("cpu").float().numpy()
        if name.endswith("self_attn.q_proj.weight"):
            array = rotary_interleave(array, heads)
        elif name.endswith("self_attn.k_proj.weight"):
            array = rotary_interleave(array, kv_heads)
        _add_tensor(writer, name, np.ascontiguousarray(array), compute_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
