"""What conf/diverse accepts (also ``retention.sampling``, the same group)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, PositiveInt

from delia.infra.schema import Closed


class VllmOptions(Closed):
    gpu_memory_utilization: float = Field(gt=0, le=1)
    dtype: str = "auto"
    tensor_parallel_size: PositiveInt = 1


class SelfSample(Closed):
    """Diverse data sampled from the model itself (delia/diverse/)."""

    name: Literal["self_sample", "none"]  # none: no diverse data, whatever the ratio
    ratio: NonNegativeFloat
    queries: str
    use_reference: bool
    temperature: float = Field(gt=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: PositiveInt
    batch_size: PositiveInt
    seed: int
    sampler: Literal["transformers", "vllm"]
    vllm: VllmOptions


DIVERSE_SCHEMAS = {"self_sample": SelfSample, "none": SelfSample}
