"""What conf/diverse accepts (also ``retention.sampling``, the same group)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeFloat, NonNegativeInt, PositiveInt

from delia.infra.schema import Closed


class VllmOptions(Closed):
    gpu_memory_utilization: float = Field(gt=0, le=1)
    dtype: str = "auto"
    tensor_parallel_size: PositiveInt = 1


class LlamaCppOptions(Closed):
    compute_type: Literal["f32", "bf16", "f16", "q8_0", "q4_1"]  # gguf_export.COMPUTE_TYPES
    workers: NonNegativeInt = 0  # 0: one per CPU core
    slots: PositiveInt = 16


class OpenVinoOptions(Closed):
    gguf: str | None = None  # the GGUF file OpenVINO GenAI samples (delia/diverse/openvino.py)
    max_num_seqs: PositiveInt = 64


class TorchEngineOptions(Closed):
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    slots: PositiveInt = 64


class SelfQueries(Closed):
    temperature: float = Field(gt=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: PositiveInt


class SelfSample(Closed):
    """Diverse data sampled from the model itself (delia/diverse/)."""

    name: Literal["self_sample", "none"]  # none: no diverse data, whatever the ratio
    ratio: NonNegativeFloat
    queries: str
    allow_repeats: bool = False
    use_reference: bool
    system_prompt: str | None = None
    truncated: Literal["no_eos", "drop"] = "no_eos"
    self_queries: SelfQueries
    temperature: float = Field(gt=0)
    top_p: float = Field(gt=0, le=1)
    max_new_tokens: PositiveInt
    batch_size: PositiveInt
    seed: int
    sampler: Literal["llamacpp", "torch_engine", "transformers", "vllm", "openvino"]
    vllm: VllmOptions
    llamacpp: LlamaCppOptions
    torch_engine: TorchEngineOptions
    openvino: OpenVinoOptions = Field(default_factory=OpenVinoOptions)


DIVERSE_SCHEMAS = {"self_sample": SelfSample, "none": SelfSample}
