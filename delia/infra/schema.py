"""Typed, closed configs: every option is checked for its type, range and name before any work starts.

Groups with code of their own have a pydantic schema beside that code (``delia/<group>/schema.py``);
groups that build a library object (``_target_``: trainer, optimizer, lr_scheduler, logger, callbacks)
are checked against the target's own signature and type hints. A problem is one line naming the
option, the value and what it accepts.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from delia.infra.errors import DeliaError

HYDRA_KEYS = ("_target_", "_partial_", "_recursive_", "_convert_", "_args_")


class Closed(BaseModel):
    """A config group's schema: unknown keys are refused, values are checked for type and range."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def problem(err: ValidationError, prefix: str, accepted: list[str]) -> str:
    """The first error of a validation as one line: the option, the value, what it accepts."""
    first = err.errors()[0]
    path = ".".join([*([prefix] if prefix else []), *(str(part) for part in first["loc"])])
    if first["type"] == "extra_forbidden":
        name = str(first["loc"][-1])
        close = difflib.get_close_matches(name, accepted, n=1)
        hint = f"did you mean {close[0]}? " if close else ""
        return f"{path} is not an option of {prefix or 'the config'}; {hint}it takes: {', '.join(accepted)}"
    if first["type"] == "missing":
        return f"{path} is missing; set {path}=<value>"
    message = first["msg"][0].lower() + first["msg"][1:]
    return f"{path}={first['input']!r}: {message}"


def check(schema: type[Closed], values: Any, prefix: str) -> Closed:
    """``values`` validated by ``schema``; a problem raises a one-line :class:`DeliaError`."""
    if not isinstance(values, Mapping):
        raise DeliaError(f"{prefix}={values!r}: expected a group of options, not a single value")
    try:
        return schema.model_validate(dict(values))
    except ValidationError as err:
        raise DeliaError(problem(err, prefix, list(schema.model_fields))) from None


def pick(schemas: Mapping[str, type[Closed]], values: Any, key: str, prefix: str) -> Closed:
    """Validate ``values`` with the schema chosen by its ``key`` (``model.source``, ``dataset.kind``, ...)."""
    chosen = values.get(key) if isinstance(values, Mapping) else None
    if not isinstance(chosen, str) or chosen not in schemas:
        raise DeliaError(f"{prefix}.{key}={chosen!r} is unknown: use {', '.join(schemas)}")
    return check(schemas[chosen], values, prefix)


# --------------------------------------------------------------------------------------- _target_ groups


@cache
def _parameters(target: str) -> tuple[dict[str, Any], bool]:
    """The target's parameters with their type hints (``Any`` where a hint does not resolve), and
    whether it takes ``**kwargs``."""
    from hydra.utils import get_object

    obj = get_object(target)
    function = obj.__init__ if inspect.isclass(obj) else obj
    params = inspect.signature(function).parameters
    try:
        hints = typing.get_type_hints(function, include_extras=True)
    except Exception:  # a hint naming a type that is not importable here: resolve one by one
        hints = {name: _one_hint(function, p.annotation) for name, p in params.items()}
    names = {
        n: hints.get(n, Any) for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    }
    return names, any(p.kind == p.VAR_KEYWORD for p in params.values())


def _one_hint(function: Callable[..., Any], annotation: Any) -> Any:
    if not isinstance(annotation, str):
        return Any if annotation is inspect.Parameter.empty else annotation
    try:
        return eval(annotation, getattr(function, "__globals__", {}))
    except Exception:
        return Any


@cache
def _adapter(hint: Any) -> TypeAdapter | None:
    try:
        return TypeAdapter(hint, config=ConfigDict(arbitrary_types_allowed=True))
    except Exception:  # a hint pydantic cannot check: its value goes to the library unchecked
        return None


def check_target(values: Any, prefix: str) -> None:
    """A ``_target_`` node: the target exists, every key is one of its parameters and has its type."""
    if not isinstance(values, Mapping) or not isinstance(values.get("_target_"), str):
        raise DeliaError(f"{prefix}: expected a group with a _target_ (a class or function to build)")
    try:
        params, open_ended = _parameters(values["_target_"])
    except Exception:
        raise DeliaError(
            f"{prefix}._target_={values['_target_']!r} cannot be imported; fix the name"
        ) from None
    for key, value in values.items():
        if key in HYDRA_KEYS:
            continue
        if key not in params:
            if open_ended:
                continue
            close = difflib.get_close_matches(str(key), list(params), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            raise DeliaError(
                f"{prefix}.{key} is not an option of {values['_target_']}; {hint}it takes: {', '.join(params)}"
            )
        _check_value(params[key], value, f"{prefix}.{key}")


def _check_value(hint: Any, value: Any, path: str) -> None:
    if isinstance(value, Mapping) and "_target_" in value:
        check_target(value, path)  # a nested object, e.g. trainer.strategy
        return
    adapter = _adapter(hint)
    if adapter is None:
        return
    try:
        adapter.validate_python(value)
    except ValidationError as err:
        first = err.errors()[0]
        raise DeliaError(f"{path}={value!r}: {first['msg'][0].lower()}{first['msg'][1:]}") from None
