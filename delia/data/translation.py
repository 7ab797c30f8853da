"""The Icelandic-English translation task (WMT-21 news), with DiPMT dictionary hints as a baseline.

Data comes from a local file (``dataset.path``: ``.jsonl`` lines ``{"is": ..., "en": ...}`` or
``{"translation": {"is": ..., "en": ...}}``, or a ``.tsv`` of ``source<TAB>target`` in the configured
direction) or from the hub through ``datasets.load_dataset(dataset.hub_path, dataset.hub_config)``.
Without a separate eval source the eval split is carved out of the training data (disjoint, seeded).

*Anisotropic diversification*: each training example gets a differently worded instruction
(wording, position before/after the text, length, register vary; the task does not). Eval always uses
held-out wordings that training never shows.

*DiPMT* (Ghazvininejad et al. 2023, dictionary-based prompting): for the rare source words of a
sentence, the user turn gets hint lines such as ``In this context, the word "X" means "Y".`` The
bilingual dictionary comes from ``dataset.dictionary_path`` (TSV) or is learned from the training
pool (every pair not used for eval) by competitive linking on the Dice coefficient of sentence-level
word co-occurrence; "rare" counts come from the same training sources.
"""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from delia.data.chat import MAX_LINE_BYTES, _lines, read_jsonl
from delia.data.sep_format import Instruction, _wordings
from delia.errors import DeliaError, where

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
WORD = re.compile(r"[^\W\d_]+")
HINT = 'In this context, the word "{word}" means {meanings}.'
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


def _check_file(path: Path, option: str) -> None:
    if path.is_dir():
        raise DeliaError(f"{path}: is a directory; point {option} to a .jsonl or .tsv file")
    if not path.is_file():
        raise DeliaError(f"{path}: file not found; check {option}")


def _text(value: Any, origin: str, field: str, fix: str) -> str:
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
    source = _text(texts.get(src), origin, prefix + src, fix)
    return Pair(source, _text(texts.get(tgt), origin, prefix + tgt, fix), origin)


def _jsonl_pairs(path: Path, src: str, tgt: str, max_line_bytes: int) -> Iterator[Pair]:
    for number, obj in read_jsonl(path, max_line_bytes):
        yield row_pair(obj, src, tgt, where(path, number))


def _tsv_rows(path: Path, max_line_bytes: int) -> Iterator[tuple[int, list[str]]]:
    """``(line number, columns)`` of the non-empty lines of a UTF-8 TSV file."""
    with path.open("rb") as handle:
        for number, raw in _lines(handle, path, max_line_bytes):
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
    for index, (number, columns) in enumerate(_tsv_rows(path, max_line_bytes)):
        if len(columns) != 2:
            raise DeliaError(
                f"{where(path, number)}: {len(columns)} tab-separated columns, expected 2 "
                f"({src}<TAB>{tgt}); put exactly one tab between source and target"
            )
        if index == 0 and _is_header(columns, number, path, src, tgt):
            continue
        origin = where(path, number)
        fix = f"each line needs {src}<TAB>{tgt}"
        yield Pair(_text(columns[0], origin, src, fix), _text(columns[1], origin, tgt, fix), origin)


def read_pairs(
    path: str | Path, src: str, tgt: str, option: str = "dataset.path", max_line_bytes: int = MAX_LINE_BYTES
) -> list[Pair]:
    """Parallel pairs of a local ``.jsonl``/``.json`` or ``.tsv`` file; errors name file, line and field."""
    local = Path(path).expanduser()
    _check_file(local, option)
    if local.suffix not in LOCAL_SUFFIXES:
        raise DeliaError(
            f"{local}: unknown file type '{local.suffix}'; {option} must be a .jsonl or .tsv file"
        )
    reader = _tsv_pairs if local.suffix == ".tsv" else _jsonl_pairs
    pairs = list(reader(local, src, tgt, max_line_bytes))
    if not pairs:
        raise DeliaError(f"{local}: no sentence pairs; {option} needs at least one {src}-{tgt} pair")
    return pairs


def _load_error(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def hub_pairs(cfg: DictConfig, split: str) -> list[Pair]:
    """Pairs of ``split`` of ``dataset.hub_path``/``hub_config``; an unreachable hub is a one-line error."""
    import datasets

    try:
        data = datasets.load_dataset(cfg.hub_path, cfg.hub_config, split=split)
    except Exception as err:  # datasets raises many kinds (connection, missing config or split, ...)
        raise DeliaError(
            f"dataset.hub_path={cfg.hub_path} (config {cfg.hub_config}, split {split}): cannot load it, the hub "
            f"may be unreachable ({_load_error(err)}); {FIX_LOCAL}"
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


def user_turn(source_text: str, instruction: Instruction, src: str, tgt: str, hints: str = "") -> str:
    """Instruction before or after the source text; DiPMT hints, if any, at the end."""
    text = render_instruction(instruction, src, tgt)
    turn = f"{text}\n\n{source_text}" if instruction.position == "before" else f"{source_text}\n\n{text}"
    return f"{turn}\n\n{hints}" if hints else turn


def make_record(
    pair: Pair, instruction: Instruction, cfg: DictConfig, split: str, index: int, hints: str = ""
) -> dict[str, Any]:
    content = user_turn(pair.source, instruction, cfg.source_lang, cfg.target_lang, hints)
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
        return _wordings(n, wordings.train, True, rng) if diversify else [wordings.fixed] * n
    return _wordings(n, wordings.heldout, True, rng)


def _no_hints(source_text: str) -> str:
    return ""


def _check_direction(cfg: DictConfig) -> None:
    src, tgt = cfg.get("source_lang"), cfg.get("target_lang")
    if not src or not tgt or src == tgt:
        raise DeliaError(
            f"dataset.source_lang={src} and dataset.target_lang={tgt} must be two different language codes"
        )


def build_splits(cfg: DictConfig, dictionary_hints: bool = False) -> dict[str, list[dict[str, Any]]]:
    """Train and eval records of the translation task (conf/dataset/wmt21_is_en.yaml).

    With ``dictionary_hints`` (the DiPMT baseline), every user turn ends with hint lines for its rare
    source words; the dictionary and the word counts come from the training pool only.
    """
    _check_direction(cfg)
    train_pool, eval_pool = load_pools(cfg)
    pairs = split_pools(cfg, train_pool, eval_pool)
    hint = _no_hints
    if dictionary_hints:
        held_out = {pair.source for pair in (pairs["eval"] if eval_pool is None else eval_pool)}
        hint = hint_maker(cfg, _unique(train_pool, exclude=held_out))
    splits = {}
    for split, chosen in pairs.items():
        wordings = _split_wordings(cfg, split, len(chosen))
        splits[split] = [
            make_record(pair, instruction, cfg, split, index, hint(pair.source))
            for index, (pair, instruction) in enumerate(zip(chosen, wordings, strict=True))
        ]
    return splits


# ---------------------------------------------------------------------------------------------- DiPMT


def words(text: str) -> list[str]:
    """Lower-cased words of ``text``: runs of letters (punctuation and digits dropped)."""
    return WORD.findall(text.lower())


def word_counts(texts: Iterable[str]) -> Counter[str]:
    """How often each (lower-cased) word occurs in ``texts``."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(words(text))
    return counts


Sentence = tuple[frozenset[str], frozenset[str]]


def _dice(
    counts: tuple[Counter[str], Counter[str]], joint: Counter[tuple[str, str]]
) -> dict[tuple[str, str], float]:
    """Dice coefficient ``2 c(s, t) / (c(s) + c(t))`` of every co-occurring source/target word pair."""
    source_counts, target_counts = counts
    return {(s, t): 2 * n / (source_counts[s] + target_counts[t]) for (s, t), n in joint.items()}


def _sentence_counts(sentences: list[Sentence]) -> tuple[Counter[str], Counter[str]]:
    """In how many sentence pairs each source word and each target word occurs."""
    source_counts: Counter[str] = Counter()
    target_counts: Counter[str] = Counter()
    for source_words, target_words in sentences:
        source_counts.update(source_words)
        target_counts.update(target_words)
    return source_counts, target_counts


def _likeness(source_word: str, target_word: str) -> float:
    """Shared-prefix share: a tie-break that favours names and cognates (``reykjavíkur``/``reykjavik``)."""
    shared = next(
        (i for i, (a, b) in enumerate(zip(source_word, target_word, strict=False)) if a != b),
        min(len(source_word), len(target_word)),
    )
    return shared / max(len(source_word), len(target_word))


def _link(sentence: Sentence, scores: dict[tuple[str, str], float]) -> Iterator[tuple[str, str]]:
    """Competitive linking: the best-scoring word pairs of one sentence pair, each word linked at most once."""
    ranked = sorted(
        ((scores[(s, t)], _likeness(s, t), s, t) for s in sentence[0] for t in sentence[1]), reverse=True
    )
    used_source: set[str] = set()
    used_target: set[str] = set()
    for *_, s, t in ranked:
        if s not in used_source and t not in used_target:
            used_source.add(s)
            used_target.add(t)
            yield s, t


def build_dictionary(
    pairs: Iterable[tuple[str, str]], max_translations: int = 2, min_score: float = 0.5
) -> dict[str, list[str]]:
    """A bilingual word dictionary learned from parallel sentences (source word -> best translations).

    Words are lower-cased runs of letters. Each sentence pair links its words one-to-one, best Dice
    coefficient of sentence-level co-occurrence first (competitive linking; ties go to the most similar
    spelling). A link's score is ``2 links(s, t) / (c(s) + c(t))``; each source word keeps its
    ``max_translations`` best targets scoring at least ``min_score``.
    """
    sentences = [(frozenset(words(source)), frozenset(words(target))) for source, target in pairs]
    counts = _sentence_counts(sentences)
    joint: Counter[tuple[str, str]] = Counter(
        (s, t) for source_words, target_words in sentences for s in source_words for t in target_words
    )
    scores = _dice(counts, joint)
    links = Counter(link for sentence in sentences for link in _link(sentence, scores))
    linked = _dice(counts, links)
    candidates: dict[str, list[tuple[float, float, str]]] = {}
    for (s, t), score in linked.items():
        if score >= min_score:
            candidates.setdefault(s, []).append((-score, -_likeness(s, t), t))
    return {s: [t for *_, t in sorted(found)[:max_translations]] for s, found in sorted(candidates.items())}


def _dictionary_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    _check_file(path, "dataset.dictionary_path")
    yield from _tsv_rows(path, MAX_LINE_BYTES)


def read_dictionary(path: str | Path) -> dict[str, list[str]]:
    """A ``source_word<TAB>translation`` TSV (a word may have several lines) -> word -> translations."""
    local = Path(path).expanduser()
    dictionary: dict[str, list[str]] = {}
    for number, columns in _dictionary_rows(local):
        if len(columns) != 2:
            raise DeliaError(
                f"{where(local, number)}: {len(columns)} tab-separated columns, expected 2 "
                f"(source_word<TAB>translation); fix the line in dataset.dictionary_path"
            )
        origin, fix = where(local, number), "each line needs source_word<TAB>translation"
        word = _text(columns[0], origin, "source_word", fix).lower()
        translation = _text(columns[1], origin, "translation", fix)
        if translation not in dictionary.setdefault(word, []):
            dictionary[word].append(translation)
    if not dictionary:
        raise DeliaError(
            f"{local}: no dictionary entries; dataset.dictionary_path needs source_word<TAB>translation lines"
        )
    return dictionary


def rare_words(text: str, counts: Counter[str] | dict[str, int], rare_max_count: int) -> list[str]:
    """The distinct words of ``text`` (in order) seen at most ``rare_max_count`` times in ``counts``."""
    return [word for word in dict.fromkeys(words(text)) if counts.get(word, 0) <= rare_max_count]


def _meanings(translations: list[str]) -> str:
    quoted = [f'"{t}"' for t in translations]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def dictionary_hints(
    source_text: str,
    dictionary: dict[str, list[str]],
    counts: Counter[str] | dict[str, int],
    rare_max_count: int,
    max_hints: int,
) -> str:
    """DiPMT hint lines (``In this context, the word "X" means "Y" or "Z".``) for rare dictionary words."""
    found = [word for word in rare_words(source_text, counts, rare_max_count) if dictionary.get(word)]
    return "\n".join(
        HINT.format(word=word, meanings=_meanings(dictionary[word])) for word in found[:max_hints]
    )


def _hint_settings(cfg: DictConfig) -> tuple[int, int]:
    max_hints, rare_max = cfg.get("dictionary_max_hints", 8), cfg.get("rare_max_count", 2)
    for key, value in (("dictionary_max_hints", max_hints), ("rare_max_count", rare_max)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise DeliaError(f"dataset.{key}={value} must be an integer >= 0")
    return max_hints, rare_max


def hint_maker(cfg: DictConfig, training: list[Pair]) -> Callable[[str], str]:
    """``source text -> hints``: the dictionary from ``dataset.dictionary_path`` or learned from ``training``."""
    max_hints, rare_max = _hint_settings(cfg)
    path = cfg.get("dictionary_path")
    pairs = [(pair.source, pair.target) for pair in training]
    dictionary = read_dictionary(path) if path else build_dictionary(pairs)
    counts = word_counts(source for source, _ in pairs)
    return lambda text: dictionary_hints(text, dictionary, counts, rare_max, max_hints)
