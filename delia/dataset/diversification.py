"""Anisotropic diversification: every training example gets a differently worded instruction.

The wording, its position (before or after the data), its length and its register vary; the task and
the output format do not. Without diversification every example gets the same, first wording.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Instruction:
    text: str
    position: str  # "before" or "after" the data block
    register: str
    length: str


def anisotropic_wordings(
    n: int, pool: tuple[Instruction, ...], diversify: bool, rng: random.Random
) -> list[Instruction]:
    """Anisotropic diversification: cycle through the shuffled wordings; without it, one fixed wording."""
    if not diversify:
        return [pool[0]] * n
    order = list(pool)
    rng.shuffle(order)
    return [order[i % len(order)] for i in range(n)]
