"""peft (conf/peft/): LoRA on the attention projections; the new token's rows trained as trainable tokens."""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf


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
