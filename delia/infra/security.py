"""Keep secrets out of saved configs and logs, and keep data paths inside the allowed roots."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from delia.infra.errors import DeliaError
from delia.infra.files import atomic_write_text

REDACTED = "***REDACTED***"

# Key names that hold secrets. Deliberately no bare "token": ``pad_token``, ``max_new_tokens`` etc. are settings.
SECRET_KEY_RE = re.compile(
    r"(^|_)(api_?key|secret|secret_key|password|passwd|auth_token|access_token|hf_token|private_key)$",
    re.IGNORECASE,
)
# Environment variables whose values are treated as secrets wherever they appear in a config.
SECRET_ENV_NAME_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD", re.IGNORECASE)
MIN_SECRET_LEN = 8


def is_secret_key(name: object) -> bool:
    """Whether a dict key's name marks its value as a secret (case-insensitive)."""
    return isinstance(name, str) and SECRET_KEY_RE.search(name) is not None


def secret_values(env: Mapping[str, str] | None = None) -> list[str]:
    """Values of environment variables named like secrets (KEY, TOKEN, SECRET, PASSWORD), longest first.

    Values shorter than ``MIN_SECRET_LEN`` characters are ignored, so that short, common strings are not
    scrubbed from the config. ``env`` defaults to ``os.environ``.
    """
    source = os.environ if env is None else env
    values = {
        value
        for name, value in source.items()
        if SECRET_ENV_NAME_RE.search(name) and isinstance(value, str) and len(value) >= MIN_SECRET_LEN
    }
    # Longest first, so a secret that contains another one is replaced whole.
    return sorted(values, key=lambda v: (-len(v), v))


def _scrub_string(text: str, secrets: Sequence[str]) -> str:
    """Replace every occurrence of each secret inside ``text``."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact(obj: Any, secrets: Sequence[str]) -> Any:
    """Recursive worker of :func:`redact`; builds new containers and never modifies ``obj``."""
    if isinstance(obj, Mapping):
        out: dict[Any, Any] = {}
        for key, value in obj.items():
            if is_secret_key(key) and isinstance(value, str) and value:
                out[key] = REDACTED
            else:
                out[key] = _redact(value, secrets)
        return out
    if isinstance(obj, list):
        return [_redact(item, secrets) for item in obj]
    if isinstance(obj, tuple):
        return tuple(_redact(item, secrets) for item in obj)
    if isinstance(obj, str):
        return _scrub_string(obj, secrets)
    return obj


def redact(obj: Any, env: Mapping[str, str] | None = None) -> Any:
    """Return a deep copy of a plain config with secrets replaced by ``"***REDACTED***"``.

    A non-empty string under a key named like a secret (``api_key``, ``wandb_api_key``, ``password``,
    ``hf_token``, ...) is replaced whole. Anywhere else, each occurrence of a secret environment value
    (see :func:`secret_values`) inside a string is replaced. ``env`` defaults to ``os.environ``.
    """
    return _redact(obj, secret_values(env))


def redacted_config(cfg: DictConfig) -> dict:
    """The resolved config as a plain dict with secrets redacted, ready to save or log."""
    container = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    return redact(container)


def _resolve(path: str | Path) -> Path:
    """Absolute path with ``~`` expanded and symlinks and ``..`` followed."""
    return Path(path).expanduser().resolve()


def check_inside_roots(path: str | Path, roots: Sequence[str | Path] | None, option: str) -> Path:
    """Refuse a path (after following symlinks and ``..``) that lies outside every allowed root.

    With no roots (``None`` or empty) the path is returned unchanged. Otherwise the resolved path is
    returned, or a one-line :class:`DeliaError` naming ``option`` is raised.
    """
    if not roots:
        return Path(path)
    resolved = _resolve(path)
    if any(resolved.is_relative_to(_resolve(root)) for root in roots):
        return resolved
    allowed = ", ".join(str(root) for root in roots)
    raise DeliaError(
        f"{option}={path} is outside the allowed data roots ({allowed}); "
        "move the file under one of them or extend paths.data_roots"
    )


def log_trust_remote_code(model_name: str, enabled: bool, logger: logging.Logger) -> None:
    """Log whether code from the model repository will run: WARNING when enabled, INFO otherwise."""
    if enabled:
        logger.warning(
            "model %s: trust_remote_code=True: code from the model repository will run", model_name
        )
    else:
        logger.info("model %s: trust_remote_code=False", model_name)


def save_config(cfg: DictConfig, path: Path) -> None:
    """The resolved config, secrets redacted, written atomically."""
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(redacted_config(cfg))))
