"""What a new wording must pass to enter the pool, and the measures of the pool (``wordings/*``).

Every wording that a source writes (a file, the rules, the paraphraser) is checked in this order and
rejected for the first reason that applies; each reason is counted (``wordings/rejected_<reason>``):

- ``cut``: a paraphrase that the generation budget cut short;
- ``too_short`` / ``too_long``: fewer than ``filters.min_chars`` or more than ``filters.max_chars`` characters;
- ``missing_required``: it lacks a string it must keep: the task's special token and ``dataset.required``
  (e.g. the label words), compared case-sensitively, as the model will see them;
- ``forbidden``: it holds a string of ``dataset.forbidden`` (case-insensitive), e.g. the prior
  description's words for a ``<sep>``-style task: a wording must never describe the format;
- ``contains_reply``: it holds a training reply (replies of at least ``filters.min_reply_chars`` characters,
  compared as normalised text);
- ``reserved``: it repeats, or nearly repeats, a wording kept for evaluation (the ``<sep>`` task's
  held-out and negative wordings), so training would see an "unseen" wording;
- ``duplicate``: its normalised text is one already in the pool;
- ``near_duplicate``: its word n-grams (``filters.ngram``) overlap a pooled wording's by more than
  ``filters.max_overlap`` (Jaccard).

The dataset's own wordings (sources ``none`` and ``one``) are what the data holds: they enter the pool
unchecked, except that a repeated one is a ``duplicate``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

from delia.dataset.wordings.base import Wording, ngrams, normalized, overlap, tokens

REASONS = (
    "cut",
    "too_short",
    "too_long",
    "missing_required",
    "forbidden",
    "contains_reply",
    "reserved",
    "duplicate",
    "near_duplicate",
)
OWN_SOURCES = ("none", "one")


@dataclass(frozen=True)
class Filters:
    min_chars: int
    max_chars: int
    ngram: int
    max_overlap: float
    required: tuple[str, ...] = ()
    forbidden: tuple[str, ...] = ()
    replies: tuple[str, ...] = ()  # normalised training replies
    reserved: tuple[str, ...] = ()  # wordings kept for evaluation


@dataclass
class Pool:
    """The wordings kept (in the order they came) and the ones rejected, with the reason."""

    kept: list[Wording] = field(default_factory=list)
    rejected: list[tuple[Wording, str]] = field(default_factory=list)


def reason_to_reject(
    wording: Wording, filters: Filters, seen: set[str], kept_grams: Sequence[frozenset[tuple[str, ...]]]
) -> str | None:
    """The first filter ``wording`` fails against the pool so far (None: it is kept)."""
    text, norm = wording.text, normalized(wording.text)
    if wording.source in OWN_SOURCES:
        return "duplicate" if norm in seen else None
    checks = (
        ("cut", wording.cut),
        ("too_short", len(text) < filters.min_chars),
        ("too_long", len(text) > filters.max_chars),
        ("missing_required", any(s not in text for s in filters.required)),
        ("forbidden", any(s.lower() in text.lower() for s in filters.forbidden)),
        ("contains_reply", any(reply and reply in norm for reply in filters.replies)),
        ("reserved", _near_any(text, filters.reserved, filters)),
        ("duplicate", norm in seen),
    )
    for reason, failed in checks:
        if failed:
            return reason
    grams = ngrams(text, filters.ngram)
    if any(overlap(grams, other) > filters.max_overlap for other in kept_grams):
        return "near_duplicate"
    return None


def _near_any(text: str, others: Sequence[str], filters: Filters) -> bool:
    norm, grams = normalized(text), ngrams(text, filters.ngram)
    return any(
        norm == normalized(o) or overlap(grams, ngrams(o, filters.ngram)) > filters.max_overlap
        for o in others
    )


def filter_pool(candidates: Sequence[Wording], filters: Filters) -> Pool:
    """The candidates that pass every filter, in order; the others with their reason."""
    pool = Pool()
    seen: set[str] = set()
    kept_grams: list[frozenset[tuple[str, ...]]] = []
    for wording in candidates:
        reason = reason_to_reject(wording, filters, seen, kept_grams)
        if reason is not None:
            pool.rejected.append((wording, reason))
            continue
        pool.kept.append(wording)
        seen.add(normalized(wording.text))
        kept_grams.append(ngrams(wording.text, filters.ngram))
    return pool


def distinct_2(texts: Sequence[str]) -> float:
    """Distinct-2: distinct word bigrams over all word bigrams of ``texts`` (0 without a bigram)."""
    bigrams = [tuple(words[i : i + 2]) for words in map(tokens, texts) for i in range(len(words) - 1)]
    return len(set(bigrams)) / len(bigrams) if bigrams else 0.0


def mean_overlap(texts: Sequence[str], n: int) -> float:
    """Mean n-gram overlap (Jaccard) over every pair of ``texts`` (0 for fewer than two)."""
    grams = [ngrams(t, n) for t in texts]
    pairs = list(itertools.combinations(grams, 2))
    return sum(overlap(a, b) for a, b in pairs) / len(pairs) if pairs else 0.0


def pool_metrics(pool: Pool, sources: Sequence[str], n: int) -> dict[str, float]:
    """``wordings/*`` of the pool: kept (and per source), rejected per reason, distinct, distinct-2,
    mean pairwise overlap."""
    texts = [w.text for w in pool.kept]
    metrics = {
        "wordings/candidates": float(len(pool.kept) + len(pool.rejected)),
        "wordings/kept": float(len(pool.kept)),
    }
    for source in sources:
        metrics[f"wordings/kept_{source}"] = float(sum(w.source == source for w in pool.kept))
    for reason in REASONS:
        metrics[f"wordings/rejected_{reason}"] = float(sum(r == reason for _, r in pool.rejected))
    metrics["wordings/distinct"] = float(len({normalized(t) for t in texts}))
    metrics["wordings/distinct2"] = distinct_2(texts)
    metrics["wordings/mean_overlap"] = mean_overlap(texts, n)
    return metrics
