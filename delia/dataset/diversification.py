"""Anisotropic diversification: every training example gets a differently worded instruction.

The wording, its position (before or after the data), its length and its register vary; the task and
the output format do not. Without diversification every example gets the same, first wording.
Where the wordings come from beyond a task's own: :mod:`delia.dataset.wordings` (conf/wordings/).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Instruction:
    text: str
    position: str  # "before" or "after" the data block
    register: str
    length: str


def anisotropic_wordings(n: int, pool: Sequence[T], diversify: bool, rng: random.Random) -> list[T]:
    """Anisotropic diversification: cycle through the shuffled wordings; without it, one fixed wording."""
    if not diversify:
        return [pool[0]] * n
    order = list(pool)
    rng.shuffle(order)
    return [order[i % len(order)] for i in range(n)]
