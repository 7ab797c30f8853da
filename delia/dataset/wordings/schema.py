"""What conf/wordings accepts (the wording pool of anisotropic diversification)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from delia.diverse.schema import LlamaCppOptions, TorchEngineOptions, VllmOptions
from delia.infra.schema import Closed

Source = Literal["none", "one", "file", "rules", "paraphrase"]
PRIMARY: tuple[str, ...] = ("none", "one", "file")  # give wordings as they are
DERIVED: tuple[str, ...] = ("rules", "paraphrase")  # rewrite the primary sources' wordings


class Filters(Closed):
    min_chars: NonNegativeInt
    max_chars: PositiveInt
    ngram: PositiveInt
    max_overlap: float = Field(ge=0, le=1)
    min_reply_chars: PositiveInt


class Rules(Closed):
    registers: list[Literal["imperative", "question", "polite", "terse"]] = Field(min_length=1)
    lengths: list[Literal["short", "long"]] = Field(min_length=1)
    positions: list[Literal["before", "after"]] = Field(min_length=1)


class ParaphraseExample(Closed):
    instruction: str = Field(min_length=1)
    paraphrase: str = Field(min_length=1)


class Paraphrase(Closed):
    model: dict[str, Any] | None = None  # a model config (conf/model/), checked by its own schema
    n: PositiveInt
    prompt: str = Field(min_length=1)
    examples: list[ParaphraseExample] = Field(default_factory=list)
    sampler: Literal["llamacpp", "torch_engine", "transformers", "vllm"]
    temperature: float = Field(gt=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: PositiveInt
    batch_size: PositiveInt
    seed: int
    torch_engine: TorchEngineOptions
    llamacpp: LlamaCppOptions
    vllm: VllmOptions


class Wordings(Closed):
    """conf/wordings/: where the training instructions' wordings come from, and what a wording must pass."""

    sources: list[Source] = Field(min_length=1)
    file: str | None = None
    file_field: str = Field(min_length=1)
    heldout_share: float = Field(ge=0, lt=1)
    seed: int | None = None  # None: dataset.seed
    filters: Filters
    rules: Rules
    paraphrase: Paraphrase
