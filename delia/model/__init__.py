"""The model groups: conf/model (sources), conf/token_init (the new token's row), conf/peft (LoRA),
and the adapter a run saves."""

from delia.model.adapter import load_adapter, save_adapter
from delia.model.peft import wrap_peft
from delia.model.sources import base_model_folder, load_base, model_identity, package_file
from delia.model.token_init import (
    add_new_tokens,
    add_special_token,
    init_new_token_rows,
    resize_for_tokenizer,
)

__all__ = [
    "add_new_tokens",
    "add_special_token",
    "base_model_folder",
    "init_new_token_rows",
    "load_adapter",
    "load_base",
    "model_identity",
    "package_file",
    "resize_for_tokenizer",
    "save_adapter",
    "wrap_peft",
]
