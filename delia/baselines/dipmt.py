"""DiPMT (Ghazvininejad et al. 2023), dictionary-based prompting for translation (``baseline=dipmt``).

For the rare source words of a sentence, the user turn gets hint lines such as
``In this context, the word "X" means "Y".`` The bilingual dictionary comes from
``dataset.dictionary_path`` (TSV) or is learned from the training pool (every pair not used for eval)
by competitive linking on the Dice coefficient of sentence-level word co-occurrence; "rare" counts come
from the same training sources.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from delia.dataset.translation import Pair, check_file, required_text, training_pool, tsv_rows
from delia.infra.errors import DeliaError, where
from delia.infra.jsonl import MAX_LINE_BYTES

WORD = re.compile(r"[^\W\d_]+")
HINT = 'In this context, the word "{word}" means {meanings}.'


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
    check_file(path, "dataset.dictionary_path")
    yield from tsv_rows(path, MAX_LINE_BYTES)


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
        word = required_text(columns[0], origin, "source_word", fix).lower()
        translation = required_text(columns[1], origin, "translation", fix)
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


def with_dictionary_hints(
    splits: dict[str, list[dict[str, Any]]], cfg: DictConfig
) -> dict[str, list[dict[str, Any]]]:
    """Every user turn of the translation splits followed by the hint lines for its rare source words."""
    hint = hint_maker(cfg, training_pool(cfg))
    out = {}
    for split, records in splits.items():
        out[split] = []
        for record in records:
            hints = hint(record["source_text"])
            messages = [dict(m) for m in record["messages"]]
            if hints:
                messages[0]["content"] = f"{messages[0]['content']}\n\n{hints}"
            out[split].append({**record, "messages": messages})
    return out
