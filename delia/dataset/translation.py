"""The Icelandic-English translation task (WMT-21 news): loading the parallel data and building its splits.

Data comes from a local file (``dataset.path``: ``.jsonl`` lines ``{"is": ..., "en": ...}`` or
``{"translation": {"is": ..., "en": ...}}``, or a ``.tsv`` of ``source<TAB>target`` in the configured
direction) or from the hub through ``datasets.load_dataset(dataset.hub_path, dataset.hub_config)``.
Without a separate eval source the eval split is carved out of the training data (disjoint, seeded).

*Anisotropic diversification*: each training example gets a differently worded instruction
(wording, position before/after the text, length, register vary; the task does not). Eval always uses
held-out wordings that training never shows.

The DiPMT baseline's dictionary hints are added by :mod:`delia.baselines.dipmt`.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from delia.dataset.diversification import Instruction, anisotropic_wordings
from delia.infra.errors import DeliaError, first_line, where
from delia.infra.jsonl import MAX_LINE_BYTES, read_jsonl, read_lines

LANGUAGE_NAMES = {
    "is": "Icelandic",
    "en": "English",
    "de": "German",
    "fr": "French",
    "cs": "Czech",
    "ru": "Russian",
    "zh": "Chinese",
    "da": "Danish",
    "no": "Norwegian",
    "sv": "Swedish",
    "fo": "Faroese",
}
LOCAL_SUFFIXES = (".jsonl", ".json", ".tsv")
FIX_LOCAL = "pass dataset.path=<local .jsonl/.tsv file>"


@dataclass(frozen=True)
class Pair:
    source: str
    target: str
    origin: str  # file:line or hub_path[index], for messages


@dataclass(frozen=True)
class Wordings:
    fixed: Instruction
    train: tuple[Instruction, ...]
    heldout: tuple[Instruction, ...]


def language_name(code: str) -> str:
    """The English name of a language code (``"is"`` -> ``"Icelandic"``); unknown codes come back as is."""
    return LANGUAGE_NAMES.get(code.lower(), code)


@cache
def load_wordings() -> Wordings:
    """The instruction wordings (delia/resources/translation_instructions.json)."""
    text = resources.files("delia.resources").joinpath("translation_instructions.json").read_text("utf-8")
    data = json.loads(text)
    return Wordings(
        fixed=Instruction(**data["fixed"]),
        train=tuple(Instruction(**item) for item in data["train"]),
        heldout=tuple(Instruction(**item) for item in data["heldout"]),
    )


# ---------------------------------------------------------------------------------------------- loading


def check_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise DeliaError(f"{path}: is a directory; point {option} to a .jsonl or .tsv file")
    if not path.is_file():
        raise DeliaError(f"{path}: file not found; check {option}")


def required_text(value: Any, origin: str, field: str, fix: str) -> str:
    if value is None:
        raise DeliaError(f"{origin} field '{field}': missing; {fix}")
    if not isinstance(value, str):
        raise DeliaError(f"{origin} field '{field}': expected a string, got {type(value).__name__}")
    if not value.strip():
        raise DeliaError(f"{origin} field '{field}': empty text; fill it or remove the pair")
    return value.strip()


def _translation_dict(row: dict[str, Any], src: str, tgt: str) -> tuple[dict[str, Any], str]:
    """The dict holding the two languages and its field prefix: ``translation``, a pair column, or the row."""
    if isinstance(row.get("translation"), dict):
        return row["translation"], "translation."
    for key, value in row.items():
        if isinstance(value, dict) and src in value and tgt in value:
            return value, f"{key}."
    return row, ""


def row_pair(row: dict[str, Any], src: str, tgt: str, origin: str) -> Pair:
    """One parallel row (top-level language keys, a ``translation`` dict or a ``<pair>`` dict) -> a pair."""
    texts, prefix = _translation_dict(row, src, tgt)
    fix = (
        f'each row needs {{"{src}": ..., "{tgt}": ...}} or {{"translation": {{"{src}": ..., "{tgt}": ...}}}}'
    )
    source = required_text(texts.get(src), origin, prefix + src, fix)
    return Pair(source, required_text(texts.get(tgt), origin, prefix + tgt, fix), origin)


def _jsonl_pairs(path: Path, src: str, tgt: str, max_line_bytes: int) -> Iterator[Pair]:
    for number, obj in read_jsonl(path, max_line_bytes):
        yield row_pair(obj, src, tgt, where(path, number))


def tsv_rows(path: Path, max_line_bytes: int) -> Iterator[tuple[int, list[str]]]:
    """``(line number, columns)`` of the non-empty lines of a UTF-8 TSV file."""
    with path.open("rb") as handle:
        for number, raw in read_lines(handle, path, max_line_bytes):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DeliaError(
                    f"{where(path, number)}: not UTF-8 ({err.reason}); re-encode the file as UTF-8"
                ) from None
            if line.strip():
                yield number, line.split("\t")


def _is_header(columns: list[str], number: int, path: Path, src: str, tgt: str) -> bool:
    names = [column.strip().lower() for column in columns]
    if names == [tgt, src]:
        raise DeliaError(
            f"{where(path, number)}: the header '{tgt}<TAB>{src}' is the reverse of the configured direction "
            f"{src}->{tgt}; swap the columns or use the other direction's dataset config"
        )
    return names == [src, tgt]


def _tsv_pairs(path: Path, src: str, tgt: str, max_line_bytes: int) -> Iterator[Pair]:
    for index, (number, columns) in enumerate(tsv_rows(path, max_line_bytes)):
        if len(columns) != 2:
            raise DeliaError(
                f"{where(path, number)}: {len(columns)} tab-separated columns, expected 2 "
                f"({src}<TAB>{tgt}); put exactly one tab between source and target"
            )
        if index == 0 and _is_header(columns, number, path, src, tgt):
            continue
        origin = where(path, number)
        fix = f"each line needs {src}<TAB>{tgt}"
        yield Pair(
            required_text(columns[0], origin, src, fix), required_text(columns[1], origin, tgt, fix), origin
        )


def read_pairs(
    path: str | Path, src: str, tgt: str, option: str = "dataset.path", max_line_bytes: int = MAX_LINE_BYTES
) -> list[Pair]:
    """Parallel pairs of a local ``.jsonl``/``.json`` or ``.tsv`` file; errors name file, line and field."""
    local = Path(path).expanduser()
    check_file(local, option)
    if local.suffix not in LOCAL_SUFFIXES:
        raise DeliaError(
            f"{local}: unknown file type '{local.suffix}'; {option} must be a .jsonl or .tsv file"
        )
    reader = _tsv_pairs if local.suffix == ".tsv" else _jsonl_pairs
    pairs = list(reader(local, src, tgt, max_line_bytes))
    if not pairs:
        raise DeliaError(f"{local}: no sentence pairs; {option} needs at least one {src}-{tgt} pair")
    return pairs


def hub_pairs(cfg: DictConfig, split: str) -> list[Pair]:
    """Pairs of ``split`` of ``dataset.hub_path``/``hub_config``; an unreachable hub is a one-line error."""
    import datasets

    try:
        data = datasets.load_dataset(cfg.hub_path, cfg.hub_config, split=split)
    except Exception as err:  # datasets raises many kinds (connection, missing config or split, ...)
        raise DeliaError(
            f"dataset.hub_path={cfg.hub_path} (config {cfg.hub_config}, split {split}): cannot load it, the hub "
            f"may be unreachable ({first_line(err)}); {FIX_LOCAL}"
        ) from err
    src, tgt = cfg.source_lang, cfg.target_lang
    pairs = [row_pair(dict(row), src, tgt, f"{cfg.hub_path}[{index}]") for index, row in enumerate(data)]
    if not pairs:
        raise DeliaError(f"dataset.hub_path={cfg.hub_path}: split {split} is empty; {FIX_LOCAL}")
    return pairs


def _local_pools(cfg: DictConfig) -> tuple[list[Pair], list[Pair] | None]:
    src, tgt = cfg.source_lang, cfg.target_lang
    limit = int(cfg.get("max_line_bytes") or MAX_LINE_BYTES)
    train = read_pairs(cfg.path, src, tgt, "dataset.path", max_line_bytes=limit)
    if not cfg.get("eval_path"):
        return train, None
    return train, read_pairs(cfg.eval_path, src, tgt, "dataset.eval_path", max_line_bytes=limit)


def _hub_pools(cfg: DictConfig) -> tuple[list[Pair], list[Pair] | None]:
    train = hub_pairs(cfg, cfg.train_split)
    eval_split = cfg.get("eval_split")
    if not eval_split or eval_split == cfg.train_split:
        return train, None
    return train, hub_pairs(cfg, eval_split)


def load_pools(cfg: DictConfig) -> tuple[list[Pair], list[Pair] | None]:
    """The training pool and the eval pool (``None``: carve eval out of the training pool)."""
    return _local_pools(cfg) if cfg.get("path") else _hub_pools(cfg)


# ---------------------------------------------------------------------------------------------- splits


def _unique(pairs: Iterable[Pair], exclude: Iterable[str] = ()) -> list[Pair]:
    """Pairs with a new source text (first one kept), leaving out the sources in ``exclude``."""
    seen = set(exclude)
    out = []
    for pair in pairs:
        if pair.source not in seen:
            seen.add(pair.source)
            out.append(pair)
    return out


def _size(cfg: DictConfig, key: str, available: int, note: str) -> int:
    """``dataset.<key>`` checked against what the data has (``null``: all of it)."""
    value = cfg.get(key)
    if value is None:
        return available
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DeliaError(f"dataset.{key}={value} must be an integer >= 0 (or null for all)")
    if value > available:
        raise DeliaError(
            f"dataset.{key}={value} exceeds the {available} pairs available{note}; lower dataset.{key}"
        )
    return value


def split_pools(
    cfg: DictConfig, train_pool: list[Pair], eval_pool: list[Pair] | None
) -> dict[str, list[Pair]]:
    """Seeded, disjoint train and eval pairs: eval comes first out of a shuffled pool when carved."""
    if eval_pool is None:
        if cfg.get("eval_size") is None:
            raise DeliaError("dataset.eval_size=null: set it to carve an eval split out of the training data")
        pool = _unique(train_pool)
        random.Random(cfg.seed).shuffle(pool)
        n_eval = _size(cfg, "eval_size", max(len(pool) - 1, 0), " (one is kept for training)")
        rest = pool[n_eval:]
        n_train = _size(cfg, "train_size", len(rest), f" after the {n_eval} eval pairs")
        return {"train": rest[:n_train], "eval": pool[:n_eval]}
    evaluation = _unique(eval_pool)
    training = _unique(train_pool, exclude={pair.source for pair in evaluation})
    random.Random(f"{cfg.seed}/eval").shuffle(evaluation)
    random.Random(f"{cfg.seed}/train").shuffle(training)
    n_eval = _size(cfg, "eval_size", len(evaluation), " in the eval data")
    n_train = _size(cfg, "train_size", len(training), " (after removing sources that are in the eval data)")
    return {"train": training[:n_train], "eval": evaluation[:n_eval]}


def render_instruction(instruction: Instruction, src: str, tgt: str) -> str:
    return instruction.text.replace("{src}", language_name(src)).replace("{tgt}", language_name(tgt))


def user_turn(source_text: str, instruction: Instruction, src: str, tgt: str) -> str:
    """The instruction before or after the source text."""
    text = render_instruction(instruction, src, tgt)
    return f"{text}\n\n{source_text}" if instruction.position == "before" else f"{source_text}\n\n{text}"


def make_record(
    pair: Pair, instruction: Instruction, cfg: DictConfig, split: str, index: int
) -> dict[str, Any]:
    content = user_turn(pair.source, instruction, cfg.source_lang, cfg.target_lang)
    return {
        "messages": [{"role": "user", "content": content}, {"role": "assistant", "content": pair.target}],
        "source_text": pair.source,
        "reference": pair.target,
        "split": split,
        "instruction": render_instruction(instruction, cfg.source_lang, cfg.target_lang),
        "origin": f"translation/{split}/{index}",
        "source_origin": pair.origin,
    }


def _split_wordings(cfg: DictConfig, split: str, n: int) -> list[Instruction]:
    wordings = load_wordings()
    rng = random.Random(f"{cfg.seed}/{split}/wordings")
    if split == "train":
        diversify = bool(cfg.get("diversify_instructions", True))
        return anisotropic_wordings(n, wordings.train, True, rng) if diversify else [wordings.fixed] * n
    return anisotropic_wordings(n, wordings.heldout, True, rng)


def _check_direction(cfg: DictConfig) -> None:
    src, tgt = cfg.get("source_lang"), cfg.get("target_lang")
    if not src or not tgt or src == tgt:
        raise DeliaError(
            f"dataset.source_lang={src} and dataset.target_lang={tgt} must be two different language codes"
        )


def build_splits(cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """Train and eval records of the translation task (conf/dataset/wmt21_is_en.yaml)."""
    _check_direction(cfg)
    pairs = split_pools(cfg, *load_pools(cfg))
    splits = {}
    for split, chosen in pairs.items():
        wordings = _split_wordings(cfg, split, len(chosen))
        splits[split] = [
            make_record(pair, instruction, cfg, split, index)
            for index, (pair, instruction) in enumerate(zip(chosen, wordings, strict=True))
        ]
    return splits


def training_pool(cfg: DictConfig) -> list[Pair]:
    """Every pair of the training source whose source text is not in the eval split (what DiPMT learns from)."""
    _check_direction(cfg)
    train_pool, eval_pool = load_pools(cfg)
    held_out = split_pools(cfg, train_pool, None)["eval"] if eval_pool is None else eval_pool
    return _unique(train_pool, exclude={pair.source for pair in held_out})
