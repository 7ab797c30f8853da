"""The wording pool: the sources of ``wordings.sources`` in order, through the filters, and the share of
it that is held out (never trained).

Sources:
- ``none``: the dataset's own wordings (a chat dataset's instructions, the most used first; the ``<sep>``
  task's 70 hand-written training wordings); listed alone, the rows stay as they are;
- ``one``: the dataset's one fixed wording (its most used instruction; the ``<sep>`` task's first);
- ``file``: ``wordings.file``, a text file (one wording a line) or JSONL (``wordings.file_field``, and an
  optional ``position``: before | after);
- ``rules`` (:mod:`delia.dataset.wordings.rules`) and ``paraphrase``
  (:mod:`delia.dataset.wordings.paraphrase`) rewrite the wordings of the sources listed with them
  (none, one, file); with none of those listed, the dataset's own wordings (which then are not pooled).

Guarantees: the pool holds no two wordings with the same normalised text; the held-out share never holds
the fixed wording (a method without diversification trains on it), and it is drawn from
``wordings.seed`` alone, so every method of a sweep holds out the same wordings.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from omegaconf import DictConfig

from delia.dataset.wordings.base import POSITIONS, Wording, ngrams, normalized, overlap
from delia.dataset.wordings.filters import Filters, Pool, filter_pool
from delia.dataset.wordings.paraphrase import Runtime, paraphrases
from delia.dataset.wordings.rules import rule_wordings
from delia.dataset.wordings.schema import PRIMARY
from delia.infra.errors import DeliaError, where
from delia.infra.jsonl import read_jsonl

log = logging.getLogger(__name__)


def read_file(path: str | None, field: str) -> list[Wording]:
    """``wordings.file``: JSONL with a ``field`` text (and an optional position) per line, or text lines."""
    if not path:
        raise DeliaError("wordings.sources lists file but wordings.file is not set: add wordings.file=<path>")
    local = Path(path)
    if not local.is_file():
        raise DeliaError(
            f"wordings.file={path}: file not found; give a text file (one wording a line) or JSONL "
            f'({{"{field}": ...}} per line)'
        )
    wordings = _jsonl(local, field) if local.suffix in (".jsonl", ".json") else _lines(local)
    if not wordings:
        raise DeliaError(f"wordings.file={path}: holds no wording; write one wording a line")
    return wordings


def _jsonl(path: Path, field: str) -> list[Wording]:
    out = []
    for number, obj in read_jsonl(path):
        text, position = obj.get(field), obj.get("position")
        if not isinstance(text, str) or not text.strip():
            raise DeliaError(
                f"{where(path, number, field)}: missing or not a text; fill it or set wordings.file_field=<field>"
            )
        if position is not None and position not in POSITIONS:
            raise DeliaError(f"{where(path, number, 'position')}: {position!r} is not before or after")
        out.append(Wording(" ".join(text.split()), "file", position))
    return out


def _lines(path: Path) -> list[Wording]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise DeliaError(f"wordings.file={path}: not UTF-8 ({err.reason}); re-encode it as UTF-8") from None
    return [Wording(" ".join(line.split()), "file") for line in lines if line.strip()]


def candidates(
    sources: Sequence[str],
    own: list[Wording],
    fixed: Wording,
    options: DictConfig,
    required: Sequence[str],
    runtime: Runtime | None,
    seed: int,
) -> list[Wording]:
    """Every source's wordings, source by source (see the module docstring)."""
    listed: dict[str, list[Wording]] = {}
    for source in sources:
        if source == "none":
            listed[source] = own
        elif source == "one":
            listed[source] = [Wording(fixed.text, "one", fixed.position, fixed.register, fixed.length)]
        elif source == "file":
            listed[source] = read_file(options.get("file"), str(options.file_field))
    bases = _distinct([w for s in sources if s in PRIMARY for w in listed[s]]) or own
    for source in sources:
        if source == "rules":
            rules = options.rules
            listed[source] = rule_wordings(bases, rules.registers, rules.lengths, rules.positions, seed)
        elif source == "paraphrase":
            if runtime is None:
                raise DeliaError(
                    "wordings.sources lists paraphrase, which needs the loaded model; this caller has none"
                )
            listed[source] = paraphrases(bases, options.paraphrase, required, runtime)
    return [w for source in sources for w in listed[source]]


def _distinct(wordings: list[Wording]) -> list[Wording]:
    seen: set[str] = set()
    out = []
    for w in wordings:
        if normalized(w.text) not in seen:
            seen.add(normalized(w.text))
            out.append(w)
    return out


def build_pool(
    sources: Sequence[str],
    own: list[Wording],
    fixed: Wording,
    options: DictConfig,
    filters: Filters,
    runtime: Runtime | None,
    seed: int,
) -> Pool:
    """The pool of ``sources``: every candidate through the filters (own wordings unchecked)."""
    return filter_pool(candidates(sources, own, fixed, options, filters.required, runtime, seed), filters)


def heldout_share(
    kept: list[Wording], fixed: Wording, share: float, seed: int, filters: Filters
) -> tuple[list[Wording], list[Wording]]:
    """``(the training share, the held-out share)`` of the pool: ``round(share x pool)`` wordings held out,
    drawn from ``seed``, never the fixed wording nor one that nearly repeats it (which the filters' n-gram
    overlap decides): a method without diversification trains on the fixed wording."""
    fixed_grams = ngrams(fixed.text, filters.ngram)
    eligible = [
        w
        for w in kept
        if normalized(w.text) != normalized(fixed.text)
        and overlap(ngrams(w.text, filters.ngram), fixed_grams) <= filters.max_overlap
    ]
    k = min(round(share * len(kept)), len(eligible))
    chosen = set(random.Random(f"{seed}/wordings/heldout").sample(range(len(eligible)), k))
    held = [w for i, w in enumerate(eligible) if i in chosen]
    held_ids = {id(w) for w in held}
    return [w for w in kept if id(w) not in held_ids], held


def _why(rejected: Sequence[tuple[Wording, str]]) -> str:
    reasons = Counter(reason for _, reason in rejected)
    return ", ".join(f"{n} {reason}" for reason, n in reasons.most_common()) or "no candidate"


def refuse_empty(pool: Pool, sources: Sequence[str]) -> None:
    """A pool that kept no wording to train on stops here, in one line, with what rejected them; a source
    that kept none is said in the log (its job then trains the other sources' wordings alone)."""
    for source in sources:
        if not any(w.source == source for w in pool.kept):
            rejected = [(w, r) for w, r in pool.rejected if w.source == source]
            log.warning(
                "wordings: source %s kept no wording (%s); the pool is the other sources' alone",
                source,
                _why(rejected),
            )
    if pool.kept:
        return
    why = _why(pool.rejected)
    raise DeliaError(
        f"wordings.sources=[{','.join(sources)}]: no wording passed the filters ({why}); list one or none in "
        f"wordings.sources as well, or relax wordings.filters"
    )
