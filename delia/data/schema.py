"""What ``data`` (the training pipeline) accepts."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeInt, PositiveInt

from delia.infra.schema import Closed


class Data(Closed):
    batch_size: PositiveInt
    max_length: PositiveInt
    on_overlength: Literal["error", "skip", "truncate"]
    num_workers: NonNegativeInt = 0
    packing: bool = True
    packed_attention: bool = True
    stream_diverse: bool = True
