"""What conf/dataset accepts, per ``dataset.kind``."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt

from delia.infra.schema import Closed

Fraction = float


class _Dataset(Closed):
    name: str
    kind: str
    seed: int
    special_token: str | None = None


class SepFormat(_Dataset):
    """The built-in ``<sep>`` task (delia/dataset/sep_format.py)."""

    kind: Literal["sep_format"]
    special_token: str = Field(min_length=1)
    train_size: PositiveInt
    eval_size: NonNegativeInt
    heldout_size: NonNegativeInt
    negative_size: NonNegativeInt
    yes_fraction: float = Field(ge=0, le=1)
    eval_yes_fraction: float = Field(ge=0, le=1)
    eval_fact_fraction: float = Field(ge=0, le=1)
    diversify_instructions: bool = True


class Columns(Closed):
    messages: str
    prompt: str
    response: str
    system: str
    instruction: str
    input: str
    output: str
    split: str = "split"


class Chat(_Dataset):
    """Any chat dataset (delia/dataset/chat.py)."""

    kind: Literal["chat"]
    path: str
    eval_path: str | None = None
    eval_fraction: float = Field(gt=0, lt=1)
    split: str
    format: Literal["messages", "prompt_response", "instruction"]
    columns: Columns
    train_size: PositiveInt | None = None
    eval_size: PositiveInt | None = None
    # set by the baselines (common_it: false); a chat dataset keeps the wordings its rows have
    diversify_instructions: bool = True
    max_line_bytes: PositiveInt


class Translation(_Dataset):
    """A translation task (delia/dataset/translation.py)."""

    kind: Literal["translation"]
    source_lang: str = Field(min_length=1)
    target_lang: str = Field(min_length=1)
    hub_path: str | None = None
    hub_config: str | None = None
    train_split: str
    eval_split: str | None = None
    path: str | None = None
    eval_path: str | None = None
    train_size: PositiveInt | None = None
    eval_size: PositiveInt | None = None
    diversify_instructions: bool = True
    dictionary_path: str | None = None
    dictionary_max_hints: NonNegativeInt
    rare_max_count: NonNegativeInt
    max_line_bytes: PositiveInt


DATASET_SCHEMAS = {"sep_format": SepFormat, "chat": Chat, "translation": Translation}
