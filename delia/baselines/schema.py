"""What conf/baseline and conf/ablation accept."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from delia.infra.schema import Closed

BaselineName = Literal[
    "delia",
    "common_it",
    "random_token",
    "mean_embedding",
    "fact_based",
    "ctg",
    "dmt",
    "dipmt",
    "disperse_merge",
]
AblationName = Literal["none", "no_task_diversification", "no_diverse_data"]
Combination = Literal["linear", "cat", "svd", "ties", "dare_linear", "dare_ties", "magnitude_prune"]


class Baseline(Closed):
    name: BaselineName
    train: bool = True  # false: evaluate the untrained model (ctg, dipmt)
    train_new_tokens: bool = True
    prior_description_in_prompt: bool = False  # ctg
    dictionary_hints: bool = False  # dipmt
    portions: int | None = Field(default=None, ge=2)  # disperse_merge
    combination: Combination | None = None
    density: float | None = Field(default=None, gt=0, le=1)


class Ablation(Closed):
    name: AblationName
