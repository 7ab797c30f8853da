"""The sampler registry (``diverse.sampler``): the name of a backend -> the backend, and what of it
enters the sample cache's key.

The backends: our own continuous-batching Llama decoder in torch on a CPU (:mod:`delia.diverse.torch_engine`,
the default), llama.cpp on a CPU (:mod:`delia.diverse.llamacpp`, the ``llamacpp`` extra), batched
transformers ``generate`` (:class:`delia.diverse.backend.TransformersSampler`), vLLM on a GPU
(:mod:`delia.diverse.vllm`), or OpenVINO GenAI on a GGUF file (:mod:`delia.diverse.openvino`, the
``openvino`` extra). Each backend imports :mod:`delia.diverse.backend` only; it is imported here
when it is chosen, so an engine that is not installed costs nothing until it is asked for.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from delia.diverse.backend import Sampler, TransformersSampler
from delia.infra.errors import DeliaError


def _vllm_sampler(model: Any, tokenizer: Any, cfg: DictConfig, source: Source) -> Sampler:
    from delia.diverse.vllm import VllmSampler

    if source.model_path is None:
        raise DeliaError("diverse.sampler=vllm needs the model's folder or hub id; this caller gave none")
    return VllmSampler(source.model_path, tokenizer, cfg)


def _llamacpp_sampler(model: Any, tokenizer: Any, cfg: DictConfig, source: Source) -> Sampler:
    from delia.diverse.llamacpp import LlamaCppSampler

    if source.cache_dir is None or source.model_id is None:
        raise DeliaError(
            "diverse.sampler=llamacpp needs the cache dir and the model identity; this caller gave none"
        )
    return LlamaCppSampler(model, tokenizer, cfg, source.cache_dir, source.model_id)


def _openvino_sampler(model: Any, tokenizer: Any, cfg: DictConfig, source: Source) -> Sampler:
    from delia.diverse.openvino import OpenVinoSampler

    return OpenVinoSampler(tokenizer, cfg)


def _torch_engine_sampler(model: Any, tokenizer: Any, cfg: DictConfig, source: Source) -> Sampler:
    from delia.diverse.torch_engine import TorchEngineSampler

    return TorchEngineSampler(model, tokenizer, cfg)


@dataclass(frozen=True)
class Source:
    """Where an engine finds the model: its folder or hub id, the cache dir and the model identity."""

    model_path: str | None = None
    cache_dir: Path | None = None
    model_id: dict[str, Any] | None = None


# diverse.sampler -> the backend's constructor
SAMPLERS: dict[str, Callable[[Any, Any, DictConfig, Source], Sampler]] = {
    "llamacpp": _llamacpp_sampler,
    "openvino": _openvino_sampler,
    "torch_engine": _torch_engine_sampler,
    "transformers": lambda model, tokenizer, cfg, source: TransformersSampler(model, tokenizer, cfg),
    "vllm": _vllm_sampler,
}


def make_sampler(
    model: Any,
    tokenizer: Any,
    cfg: DictConfig,
    model_path: str | None,
    cache_dir: Path | None = None,
    model_id: dict[str, Any] | None = None,
) -> Sampler:
    """The backend named by ``diverse.sampler`` (``model_path``: the model's folder, for engines)."""
    name = cfg.get("sampler", "transformers")
    if name not in SAMPLERS:
        raise DeliaError(f"diverse.sampler={name!r} is unknown: use {' or '.join(SAMPLERS)}")
    return SAMPLERS[name](model, tokenizer, cfg, Source(model_path, cache_dir, model_id))


# diverse.sampler -> the module an optional backend needs, and the install command that brings it
OPTIONAL = {
    "llamacpp": ("llama_cpp", "llama-cpp-python", 'pip install -e ".[llamacpp]"'),
    "openvino": ("openvino_genai", "openvino-genai", 'pip install -e ".[openvino]"'),
}


def check_installed(name: str, option: str) -> None:
    """Refuse, before any work, a backend whose optional package is missing: one line with the pip command."""
    if name not in OPTIONAL:
        return
    module, package, command = OPTIONAL[name]
    if importlib.util.find_spec(module) is None:
        raise DeliaError(
            f"{option}={name} needs {package} (the project's {name} extra, not installed): "
            f"run `{command}`, or set {option}=torch_engine"
        )


def sampler_identity(cfg: DictConfig) -> dict[str, Any]:
    """What of the backend changes the samples, for the cache key: its name and its compute type.

    transformers computes in the model's own dtype, which the model identity already holds.
    """
    name = str(cfg.get("sampler", "transformers"))
    if name == "llamacpp":
        from delia.diverse.llamacpp import options

        return {"sampler": name, "compute_type": options(cfg)["compute_type"]}
    if name == "torch_engine":
        from delia.diverse.torch_engine import ENGINE_VERSION, options

        return {"sampler": name, "dtype": options(cfg)["dtype"], "engine": ENGINE_VERSION}
    if name == "vllm":
        return {"sampler": name, "dtype": str((cfg.get("vllm") or {}).get("dtype", "auto"))}
    if name == "openvino":  # it samples that file's weights, not the model's
        from delia.diverse.openvino import options

        gguf = options(cfg)["gguf"]
        return {"sampler": name, "gguf": gguf.name, "bytes": gguf.stat().st_size}
    return {"sampler": name}
