"""The learning-rate schedules of conf/lr_scheduler/, typed so that their options are checked up front.

transformers' schedule functions carry no type hints; these wrappers give the config checker
(:mod:`delia.infra.schema`) the types and ranges, then call transformers. ``num_training_steps`` is
``${trainer.max_steps}`` in the configs: empty until the protocol has set the run's steps.
"""

from __future__ import annotations

from typing import Any

from pydantic import NonNegativeInt, PositiveInt
from torch.optim import Optimizer


def constant_with_warmup(optimizer: Optimizer, num_warmup_steps: NonNegativeInt) -> Any:
    """Linear warmup to the learning rate, then constant (the authors' release, 25 warmup steps)."""
    from transformers import get_constant_schedule_with_warmup

    return get_constant_schedule_with_warmup(optimizer, num_warmup_steps)


def cosine_with_warmup(
    optimizer: Optimizer, num_warmup_steps: NonNegativeInt, num_training_steps: PositiveInt | None = None
) -> Any:
    """Linear warmup, then a half cosine down to 0 at ``num_training_steps`` (the run's steps)."""
    from transformers import get_cosine_schedule_with_warmup

    return get_cosine_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps)


def linear_with_warmup(
    optimizer: Optimizer, num_warmup_steps: NonNegativeInt, num_training_steps: PositiveInt | None = None
) -> Any:
    """Linear warmup, then linear decay to 0 at ``num_training_steps`` (the run's steps)."""
    from transformers import get_linear_schedule_with_warmup

    return get_linear_schedule_with_warmup(optimizer, num_warmup_steps, num_training_steps)
