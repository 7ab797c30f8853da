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


class _Worded(_Dataset):
    """What a wording of the pool (conf/wordings/) must keep and must not say."""

    required: list[str] = Field(default_factory=list)  # besides the special token: e.g. the label words
    forbidden: list[str] = Field(default_factory=list)  # e.g. the prior description's words


class SepFormat(_Worded):
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


class InstructionOptions(Closed):
    """Where the instruction is in a chat dataset's user turn (one of them; none set: found automatically)."""

    pattern: str | None = None  # named groups (?P<instruction>...) and (?P<data>...)
    column: str | None = None
    sentence: str | None = None
    min_share: float = Field(default=0.5, gt=0, le=1)


class Chat(_Worded):
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
    # set by the baselines (common_it: false): one fixed wording for every row (delia/dataset/wordings/)
    diversify_instructions: bool = True
    max_line_bytes: PositiveInt
    instruction: InstructionOptions = InstructionOptions()
    negative_instruction: str | None = None  # renders the eval rows as a negative control split


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
