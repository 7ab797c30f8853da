"""What conf/eval, ``representation`` and ``retention`` accept."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PositiveInt

from delia.diverse.schema import SelfSample
from delia.infra.schema import Closed


class Eval(Closed):
    generate: bool = True
    max_new_tokens: PositiveInt | None = None  # None: from the data (budget_factor x the longest reference)
    budget_factor: float = Field(default=2.0, ge=1.0)
    batch_size: PositiveInt
    bleurt_checkpoint: str | None = None
    format: Literal["json_keys", "regex"] | None = None
    required_keys: list[str] = Field(default_factory=list)
    label_key: str | None = None
    label_values: list[str] = Field(default_factory=list)
    pattern: str | None = None


class Representation(Closed):
    keywords: list[str] = Field(min_length=1)
    layers: list[int] | None = None
    every_n_steps: PositiveInt


class Retention(Closed):
    enabled: bool
    heldout_size: PositiveInt
    probe: str
    max_new_tokens: PositiveInt
    batch_size: PositiveInt
    sampling: SelfSample
