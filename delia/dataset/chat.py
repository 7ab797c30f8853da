"""Any chat dataset: rows -> messages (the message transform, kept apart from tokenization).

Layouts (``dataset.format``), with ``dataset.columns`` mapping the field names:
- ``messages``: a list of ``{"role": "system"|"user"|"assistant", "content": str}`` ending with the assistant;
- ``prompt_response``: a prompt column and a response column (optional system column);
- ``instruction``: instruction / input / output columns (Alpaca layout).
A row may name its split in the ``dataset.columns.split`` field: ``train``, ``eval``, ``unseen_wordings``
(instructions worded as training never words them) or ``negative`` (a negative control: "do NOT use the
format", no reply needed); rows without it are split into train and eval by ``eval_fraction``.
Where a column holds the row's instruction (the ``instruction`` layout, or ``dataset.instruction.column``)
its text is kept as ``instruction_text``, for the wording pool (delia/dataset/wordings/).
Local ``.jsonl``/``.json`` files are read line by line so that an error names the file and line; other
files (``.csv``, ``.parquet``) and any other name go through ``datasets.load_dataset``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from delia.infra.errors import DeliaError, first_line, where
from delia.infra.jsonl import MAX_LINE_BYTES, read_jsonl

ROLES = ("system", "user", "assistant")


def _text(row: dict[str, Any], column: str, origin: str, required: bool = True) -> str:
    value = row.get(column)
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise DeliaError(
                f"{origin} field '{column}': missing or empty; fill it or map another column with "
                f"dataset.columns.<name>=<column>"
            )
        return ""
    if not isinstance(value, str):
        raise DeliaError(f"{origin} field '{column}': expected a string, got {type(value).__name__}")
    return value


TAGGED_SPLITS = ("train", "eval", "unseen_wordings", "negative")


def _messages(row: dict[str, Any], column: str, origin: str, reply: bool = True) -> list[dict[str, str]]:
    messages = row.get(column)
    if not isinstance(messages, list) or not messages:
        raise DeliaError(
            f"{origin} field '{column}': missing or not a non-empty list of {{role, content}}; "
            f"set dataset.format=prompt_response or instruction for other layouts"
        )
    out = []
    for i, message in enumerate(messages):
        field = f"{column}[{i}]"
        if not isinstance(message, dict):
            raise DeliaError(f"{origin} field '{field}': expected an object with role and content")
        role = message.get("role")
        if role not in ROLES:
            raise DeliaError(f"{origin} field '{field}.role': {role!r} is not one of {', '.join(ROLES)}")
        out.append({"role": role, "content": _text(message, "content", f"{origin} field '{field}'")})
    if reply and out[-1]["role"] != "assistant":
        raise DeliaError(
            f"{origin} field '{column}': the last message must be the assistant's reply to train on"
        )
    return out


def row_to_messages(
    row: dict[str, Any], fmt: str, columns: DictConfig, origin: str, reply: bool = True
) -> list[dict[str, str]]:
    """The message transform: one dataset row -> a list of chat messages (``reply=False``: the last
    message need not be the assistant's, as in a negative control)."""
    if fmt == "messages":
        return _messages(row, columns.messages, origin, reply)
    if fmt == "prompt_response":
        system = _text(row, columns.system, origin, required=False)
        messages = [{"role": "system", "content": system}] if system else []
        messages.append({"role": "user", "content": _text(row, columns.prompt, origin)})
        messages.append({"role": "assistant", "content": _text(row, columns.response, origin)})
        return messages
    if fmt == "instruction":
        user = _text(row, columns.instruction, origin)
        extra = _text(row, columns.input, origin, required=False)
        user = f"{user}\n\n{extra}" if extra else user
        return [
            {"role": "user", "content": user},
            {"role": "assistant", "content": _text(row, columns.output, origin)},
        ]
    raise DeliaError(f"dataset.format={fmt!r} is unknown: use messages, prompt_response or instruction")


def _rows(path: str, split: str, max_line_bytes: int) -> Iterator[tuple[str, dict[str, Any]]]:
    """Rows with their origin (``file:line`` or ``source[index]``)."""
    local = Path(path)
    if local.suffix in (".jsonl", ".json") or (local.exists() and local.suffix not in (".csv", ".parquet")):
        for number, obj in read_jsonl(local, max_line_bytes):
            yield where(local, number), obj
        return
    import datasets

    try:
        if local.suffix in (".csv", ".parquet"):
            if not local.is_file():
                raise DeliaError(f"{local}: file not found; check dataset.path")
            data = datasets.load_dataset(local.suffix[1:], data_files=str(local), split="train")
        else:
            data = datasets.load_dataset(path, split=split)
    except DeliaError:
        raise
    except Exception as err:  # datasets raises many kinds (connection, missing builder, ...)
        raise DeliaError(
            f"dataset.path={path}: cannot load it with datasets ({first_line(err)}); give a local .jsonl file or a reachable source"
        ) from err
    for index, row in enumerate(data):
        yield f"{path}[{index}]", dict(row)


def instruction_text(row: dict[str, Any], cfg: DictConfig) -> str | None:
    """The row's instruction where a column holds it (the ``instruction`` layout's instruction column, or
    ``dataset.instruction.column``), for the wording pool (delia/dataset/wordings/); else None."""
    options = cfg.get("instruction") or {}
    column = cfg.columns.instruction if cfg.format == "instruction" else options.get("column")
    value = row.get(column) if column else None
    return value if isinstance(value, str) and value.strip() else None


def _split_of(row: dict[str, Any], cfg: DictConfig, origin: str) -> str | None:
    column = cfg.columns.get("split") or "split"
    tag = row.get(column)
    if tag is None:
        return None
    if tag not in TAGGED_SPLITS:
        raise DeliaError(f"{origin} field '{column}': {tag!r} is not one of {', '.join(TAGGED_SPLITS)}")
    return str(tag)


def load_records(path: str, cfg: DictConfig) -> list[dict[str, Any]]:
    records = []
    for origin, row in _rows(path, cfg.split, int(cfg.get("max_line_bytes", MAX_LINE_BYTES))):
        split = _split_of(row, cfg, origin)
        messages = row_to_messages(row, cfg.format, cfg.columns, origin, reply=split != "negative")
        record = {"messages": messages, "origin": origin, **({"split": split} if split else {})}
        text = instruction_text(row, cfg)
        records.append({**record, "instruction_text": text} if text else record)
    if not records:
        raise DeliaError(f"dataset.path={path}: the dataset is empty; it needs at least one example")
    return records


def build_splits(cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """Train and eval splits of a chat dataset (``eval`` from ``eval_path`` or a seeded ``eval_fraction``),
    and the rows whose split field names another split (``unseen_wordings``, ``negative``, ...)."""
    tagged: dict[str, list[dict[str, Any]]] = {name: [] for name in TAGGED_SPLITS}
    records = []
    for record in load_records(cfg.path, cfg):
        (tagged[record["split"]] if "split" in record else records).append(record)
    splits = _train_and_eval(records, cfg) if records else {"train": [], "eval": []}
    splits["train"] += tagged["train"]
    splits["eval"] += tagged["eval"]
    splits.update({name: tagged[name] for name in ("unseen_wordings", "negative") if tagged[name]})
    if not splits["train"]:
        raise DeliaError(f"dataset.path={cfg.path}: no training examples (every row names another split)")
    return splits


def _train_and_eval(records: list[dict[str, Any]], cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    if cfg.eval_path:
        train, evaluation = records, load_records(cfg.eval_path, cfg)
    else:
        shuffled = records[:]
        random.Random(cfg.seed).shuffle(shuffled)
        n_eval = (
            min(max(1, round(len(shuffled) * cfg.eval_fraction)), len(shuffled) - 1)
            if len(shuffled) > 1
            else 0
        )
        evaluation, train = shuffled[:n_eval], shuffled[n_eval:]
    if cfg.train_size is not None:
        train = train[: int(cfg.train_size)]
    if cfg.get("eval_size") is not None:
        evaluation = evaluation[: int(cfg.eval_size)]
    return {"train": train, "eval": evaluation}
