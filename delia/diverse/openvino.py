"""Self-sampling with OpenVINO GenAI (``diverse.sampler=openvino``, the ``openvino`` extra): tried as a
maintained CPU engine with continuous batching beside our own :mod:`delia.diverse.torch_engine`.

What it serves, as measured here (openvino-genai 2026.4.1): a GGUF *file* that OpenVINO GenAI's own reader
takes, ``diverse.openvino.gguf`` (the embedded SmolLM2's Q4_1 file loads directly, in about 5 s). It does
not take a float32 GGUF ("Unsupported quantization type"), and the F16/Q8_0 files our exporter writes for
llama.cpp (:mod:`delia.diverse.gguf_export`) load but decode greedily to other tokens than transformers
does. The Q4_1 file holds exactly the embedded model's weights (delia-train dequantizes it to float32), yet
OpenVINO's greedy replies leave transformers' at tokens that are not all near-ties, also with its CPU plugin
set to float32 inference, a float32 cache and no int8 activations (``notebooks/openvino_properties.py``):
its samples come from a nearby distribution, which ``delia-bench``'s log-probability check measures. That
is why it is a choice, not the default.

Sampling as the other backends: temperature, then top-p, no top-k (``top_k=0``), a generator seeded per
request (``rng_seed``), stop at every end-of-turn id of the chat template or at ``max_new_tokens``; each
reply says which (OpenVINO's finish reason). Prompts are token ids from the model's Hugging Face
tokenizer, replies are decoded with it too.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from omegaconf import DictConfig

from delia.diverse.backend import EngineSampler
from delia.infra.errors import DeliaError

log = logging.getLogger(__name__)
FIX = '`pip install -e ".[openvino]"` (openvino-genai), or set diverse.sampler=torch_engine'
DEFAULTS = {"gguf": None, "max_num_seqs": 64}


def import_openvino_genai() -> ModuleType:
    """The ``openvino_genai`` module, or a one-line :class:`DeliaError` naming the option and the fix."""
    try:
        module = importlib.import_module("openvino_genai")
        for name in ("ContinuousBatchingPipeline", "SchedulerConfig", "GenerationConfig", "GenerationStatus"):
            getattr(module, name)
    except (ImportError, AttributeError, OSError):
        raise DeliaError(
            f"diverse.sampler=openvino needs openvino-genai, which is not installed: run {FIX}"
        ) from None
    return module


def options(cfg: DictConfig) -> dict[str, Any]:
    merged = {**DEFAULTS, **dict(cfg.get("openvino") or {})}
    if not merged["gguf"]:
        raise DeliaError(
            "diverse.sampler=openvino samples a GGUF file: set diverse.openvino.gguf=<file.gguf> (OpenVINO GenAI "
            "reads Q4_1, Q8_0 or F16 files written by llama.cpp's converter, such as the embedded model's)"
        )
    path = Path(str(merged["gguf"])).expanduser()
    if not path.is_file():
        raise DeliaError(f"diverse.openvino.gguf={path}: file not found; point it to a .gguf file")
    return {"gguf": path, "max_num_seqs": int(merged["max_num_seqs"])}


class OpenVinoEngine:
    """OpenVINO GenAI's ``ContinuousBatchingPipeline`` on the CPU: every request at once, each reply
    yielded as it finishes (``run`` is what :class:`~delia.diverse.backend.EngineSampler` drives)."""

    def __init__(self, gguf: Path, max_num_seqs: int) -> None:
        self.ov = import_openvino_genai()
        scheduler = self.ov.SchedulerConfig()
        scheduler.max_num_seqs = max_num_seqs
        self.pipe = self.ov.ContinuousBatchingPipeline(str(gguf), scheduler, "CPU")

    def _config(self, seed: int, settings: dict[str, Any]) -> Any:
        config = self.ov.GenerationConfig()
        config.do_sample = True
        config.temperature = float(settings["temperature"])
        config.top_p = float(settings["top_p"])
        config.top_k = 0  # off, as every backend
        config.max_new_tokens = int(settings["max_new_tokens"])
        config.rng_seed = int(seed)
        config.stop_token_ids = set(settings["stop_ids"])
        return config

    def run(
        self, prompts: list[list[int]], seeds: list[int], settings: dict[str, Any]
    ) -> Iterator[tuple[int, list[int], bool]]:
        import numpy as np
        import openvino as ov_runtime

        handles = {
            k: self.pipe.add_request(
                k, ov_runtime.Tensor(np.array([ids], dtype=np.int64)), self._config(s, settings)
            )
            for k, (ids, s) in enumerate(zip(prompts, seeds, strict=True))
        }
        finished = self.ov.GenerationStatus.FINISHED
        while handles:
            self.pipe.step()
            for k in [k for k, handle in handles.items() if handle.get_status() == finished]:
                [output] = handles.pop(k).read_all()
                new = list(output.generated_ids)
                yield k, new, output.finish_reason == self.ov.GenerationFinishReason.STOP

    def close(self) -> None:
        self.pipe = None


class OpenVinoSampler(EngineSampler):
    """``diverse.sampler=openvino``: OpenVINO GenAI on the GGUF file ``diverse.openvino.gguf``."""

    def __init__(self, tokenizer: Any, cfg: DictConfig) -> None:
        opts = options(cfg)
        engine = OpenVinoEngine(opts["gguf"], opts["max_num_seqs"])
        super().__init__(engine, tokenizer, cfg, f"openvino {opts['gguf'].name}")
        log.info("openvino sampler: %s, up to %d sequences at once", opts["gguf"], opts["max_num_seqs"])
