"""Applying the wording pool to the task's splits (called by the recipe once the model is loaded).

Chat data (``dataset=jsonl``), when a pool is asked (``wordings.sources`` other than ``[none]``):
- ``train``: each matched row gets a wording of the pool's training share (anisotropic diversification:
  the shuffled share cycled over the rows), or, with ``dataset.diversify_instructions=false``
  (``common_it``, ``ablation=no_task_diversification``), the one fixed wording, the dataset's most used;
- ``eval``: unchanged (the rows' own wordings: the same probe for every method, ``eval/loss`` on it);
- ``seen_wordings``: the eval rows, worded with the wordings this run trained on;
- ``unseen_wordings``: the eval rows, worded with the held-out share (``wordings.heldout_share``), which
  no run trains on (added to the rows a file tags ``unseen_wordings``);
- ``negative``: the eval rows with ``dataset.negative_instruction`` and no reply (added to tagged ones).
With ``[none]`` the rows stay as they are; a fixed wording is still applied without diversification,
and the negative split is still written when the dataset names a negative instruction.

The built-in ``<sep>`` task: the pool replaces its 70 hand-written training wordings (``train`` and
``seen_wordings``); ``unseen_wordings`` keeps the 28 hand-written held-out wordings and ``negative`` its
own, so that pools are compared on the same held-out wordings; wordings that repeat those are rejected.
Without diversification the task keeps its one fixed wording, as before.

Guarantees: the data part of a user turn is never rewritten; seen and unseen wordings are disjoint;
everything is deterministic given ``wordings.seed`` (and the paraphrase cache).
"""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from omegaconf import DictConfig

from delia.dataset import sep_format
from delia.dataset.diversification import anisotropic_wordings
from delia.dataset.wordings.base import Found, Wording, ngrams, normalized, overlap
from delia.dataset.wordings.filters import Filters, Pool, pool_metrics
from delia.dataset.wordings.instruction import first_user, locate, own_wordings, refuse_unmatched
from delia.dataset.wordings.paraphrase import Runtime
from delia.dataset.wordings.pool import build_pool, heldout_share, refuse_empty
from delia.infra.types import Record, Splits

log = logging.getLogger(__name__)


@dataclass
class WordingReport:
    """What a run's wordings were: ``wordings/*`` measures, the pool and its rejects (``wordings.json``)."""

    how: str
    metrics: dict[str, float]
    pool: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        return {"how": self.how, "metrics": self.metrics, "pool": self.pool, "rejected": self.rejected}


def wording_seed(cfg: DictConfig) -> int:
    """``wordings.seed``, or the dataset's seed: every method of a sweep gets the same pool and shares."""
    seed = cfg.wordings.get("seed")
    return int(seed if seed is not None else cfg.dataset.seed)


def sources_of(cfg: DictConfig) -> list[str]:
    options = cfg.get("wordings")
    return list(options.sources) if options is not None else ["none"]


def asked(cfg: DictConfig) -> str:
    """What in the config needs the instruction found (for the one-line refusals)."""
    sources = sources_of(cfg)
    if sources != ["none"]:
        return f"wordings.sources=[{','.join(sources)}]"
    if not cfg.dataset.get("diversify_instructions", True):
        if cfg.baseline.name != "delia":
            return f"baseline={cfg.baseline.name} (one fixed wording for every row)"
        if cfg.ablation.name != "none":
            return f"ablation={cfg.ablation.name} (one fixed wording for every row)"
        return "dataset.diversify_instructions=false (one fixed wording for every row)"
    return "dataset.negative_instruction"


def needs_instruction(cfg: DictConfig) -> bool:
    """Whether this run rewrites a chat dataset's instructions (else its rows stay as they are)."""
    diversify = bool(cfg.dataset.get("diversify_instructions", True))
    return sources_of(cfg) != ["none"] or not diversify or bool(cfg.dataset.get("negative_instruction"))


def dataset_filters(cfg: DictConfig, replies: Sequence[str], reserved: Sequence[str] = ()) -> Filters:
    """The filters of ``wordings.filters`` with the strings the dataset names."""
    options, dataset = cfg.wordings.filters, cfg.dataset
    token = dataset.get("special_token")
    required = [*([token] if token else []), *(dataset.get("required") or [])]
    return Filters(
        min_chars=int(options.min_chars),
        max_chars=int(options.max_chars),
        ngram=int(options.ngram),
        max_overlap=float(options.max_overlap),
        required=tuple(dict.fromkeys(required)),
        forbidden=tuple(dataset.get("forbidden") or []),
        replies=tuple(normalized(r) for r in replies if len(r) >= int(options.min_reply_chars)),
        reserved=tuple(reserved),
    )


def apply_wordings(
    cfg: DictConfig, splits: Splits, runtime: Runtime | None
) -> tuple[Splits, WordingReport | None]:
    """The splits with the pool's wordings applied (see the module docstring), and the report (None:
    nothing was applied, the splits are returned as they were)."""
    if cfg.get("wordings") is None or cfg.dataset.kind == "translation":
        return splits, None
    if cfg.dataset.kind == "sep_format":
        return _sep(cfg, splits, runtime)
    return _chat(cfg, splits, runtime)


# ----------------------------------------------------------------------------------------------- chat


def _chat(cfg: DictConfig, splits: Splits, runtime: Runtime | None) -> tuple[Splits, WordingReport | None]:
    if not needs_instruction(cfg):
        return splits, None
    options, dataset = cfg.wordings, cfg.dataset
    sources, seed = sources_of(cfg), wording_seed(cfg)
    rows = [*splits["train"], *splits.get("eval", [])]
    located = locate(rows, dataset)
    refuse_unmatched(located, asked(cfg), str(dataset.path), len(rows))
    if located.matched < len(rows):
        log.warning(
            "wordings: the instruction was found in %d of %d rows (%s); the others keep their wording",
            located.matched,
            len(rows),
            located.how,
        )
    found = {id(r): f for r, f in zip(rows, located.found, strict=True)}
    own = own_wordings(located)
    pool, train_share, held = _chat_pool(cfg, splits, own, runtime, seed)
    out = dict(splits)
    out["train"], trained = _chat_train(cfg, splits["train"], found, own, train_share, seed)
    out.update(_eval_splits(cfg, splits, found, trained, held, seed))
    metrics = {"wordings/rows": float(len(rows)), "wordings/rows_matched": float(located.matched)}
    metrics.update(pool_metrics(pool, sources, int(options.filters.ngram)))
    metrics.update(_shares(train_share, held, trained, int(options.filters.ngram)))
    return out, _report(located.how, metrics, pool, train_share, held)


def _chat_pool(
    cfg: DictConfig, splits: Splits, own: list[Wording], runtime: Runtime | None, seed: int
) -> tuple[Pool, list[Wording], list[Wording]]:
    """The pool, its training share and its held-out share (``[none]``: the rows' own, nothing held out)."""
    sources = sources_of(cfg)
    if sources == ["none"]:
        return Pool(kept=own), own, []
    replies = [r["messages"][-1]["content"] for r in splits["train"]]
    filters = dataset_filters(cfg, replies)
    pool = build_pool(sources, own, own[0], cfg.wordings, filters, runtime, seed)
    refuse_empty(pool, sources)
    train_share, held = heldout_share(pool.kept, own[0], float(cfg.wordings.heldout_share), seed, filters)
    return pool, train_share, held


def _chat_train(
    cfg: DictConfig,
    train: list[Record],
    found: dict[int, Found | None],
    own: list[Wording],
    train_share: list[Wording],
    seed: int,
) -> tuple[list[Record], list[Wording]]:
    """The train split and the wordings it uses: the fixed wording without diversification, the training
    share cycled over the rows with a pool, else the rows as they are."""
    if not cfg.dataset.get("diversify_instructions", True):
        return _worded(train, found, [own[0]], None, "train")
    if sources_of(cfg) != ["none"]:
        return _worded(train, found, train_share, random.Random(f"{seed}/train/wordings"), "train")
    texts = dict.fromkeys(f.instruction for r in train if (f := found.get(id(r))))
    return train, [Wording(text, "none") for text in texts]


def _eval_splits(
    cfg: DictConfig,
    splits: Splits,
    found: dict[int, Found | None],
    trained: list[Wording],
    held: list[Wording],
    seed: int,
) -> Splits:
    """The eval rows as ``seen_wordings`` (a pool's trained wordings), ``unseen_wordings`` (its held-out
    share) and ``negative`` (``dataset.negative_instruction``, no reply), each where there is one."""
    evaluation, out = splits.get("eval", []), {}
    if not evaluation:
        return out
    if sources_of(cfg) != ["none"] and trained:
        rng = random.Random(f"{seed}/seen")
        out["seen_wordings"], _ = _worded(evaluation, found, trained, rng, "seen_wordings", True)
    if held:
        rng = random.Random(f"{seed}/unseen")
        generated, _ = _worded(evaluation, found, held, rng, "unseen_wordings", True)
        out["unseen_wordings"] = [*splits.get("unseen_wordings", []), *generated]
    negative = cfg.dataset.get("negative_instruction")
    if negative:
        generated, _ = _worded(
            evaluation, found, [Wording(str(negative), "negative")], None, "negative", True, False
        )
        out["negative"] = [*splits.get("negative", []), *generated]
    return out


def _worded(
    records: list[Record],
    found: dict[int, Found | None],
    wordings: Sequence[Wording],
    rng: random.Random | None,
    split: str,
    generated: bool = False,
    reply: bool = True,
) -> tuple[list[Record], list[Wording]]:
    """``records`` with their matched user turns worded by ``wordings`` (shuffled by ``rng`` and cycled;
    None: the first for every record), and the wordings used, in order of first use. An unmatched record
    is kept as it is (``generated``: left out of the new split)."""
    matched = [r for r in records if found.get(id(r)) is not None]
    assigned = anisotropic_wordings(len(matched), list(wordings), rng is not None, rng or random.Random(0))
    by_record = {id(r): w for r, w in zip(matched, assigned, strict=True)}
    out = []
    for record in records:
        split_of = found.get(id(record))
        if split_of is not None:
            out.append(
                _reworded(record, split_of, by_record[id(record)], split if generated else None, reply)
            )
        elif not generated:
            out.append(record)
    return out, list(dict.fromkeys(assigned))


def _reworded(record: Record, found: Found, wording: Wording, split: str | None, reply: bool) -> Record:
    messages = [dict(m) for m in record["messages"]]
    index = first_user(messages)
    assert index is not None  # a matched record has a user turn
    messages[index]["content"] = found.render(wording)
    if not reply and messages[-1]["role"] == "assistant":
        messages = messages[:-1]
    out = {**record, "messages": messages, "instruction": wording.text}
    if split is not None:
        out["split"] = split
        out["origin"] = f"{record.get('origin', split)} as {split}"
    return out


def _shares(
    train_share: list[Wording],
    held: list[Wording],
    trained: list[Wording],
    n: int,
    unseen: Sequence[str] | None = None,
) -> dict[str, float]:
    """The shares' sizes, and how unseen the wordings of the unseen_wordings split are (``unseen``; the
    held-out share by default): the largest n-gram overlap of one of them with a trained wording."""
    trained_grams = [ngrams(w.text, n) for w in trained]
    texts = [w.text for w in held] if unseen is None else unseen
    closest = [overlap(ngrams(text, n), t) for text in texts for t in trained_grams]
    return {
        "wordings/train_share": float(len(train_share)),
        "wordings/heldout_share": float(len(held)),
        "wordings/trained": float(len(trained)),
        "wordings/heldout_max_overlap": max(closest, default=0.0),
    }


def _report(
    how: str, metrics: dict[str, float], pool: Pool, train_share: list[Wording], held: list[Wording]
) -> WordingReport:
    log.info(
        "wordings: %d kept of %d (%d rejected), %d to train, %d held out; %d trained; instruction: %s",
        len(pool.kept),
        len(pool.kept) + len(pool.rejected),
        len(pool.rejected),
        len(train_share),
        len(held),
        metrics["wordings/trained"],
        how,
    )
    held_ids = {id(w) for w in held}
    kept = [
        {
            "text": w.text,
            "source": w.source,
            "position": w.position,
            "register": w.register,
            "length": w.length,
            "share": "heldout" if id(w) in held_ids else "train",
        }
        for w in pool.kept
    ]
    rejected = [{"text": w.text, "source": w.source, "reason": reason} for w, reason in pool.rejected]
    return WordingReport(how, metrics, kept, rejected)


# ------------------------------------------------------------------------------------------ <sep> task


def _sep(cfg: DictConfig, splits: Splits, runtime: Runtime | None) -> tuple[Splits, WordingReport | None]:
    sources = sources_of(cfg)
    if sources == ["none"]:
        return splits, None
    options, token = cfg.wordings, str(cfg.dataset.special_token)
    res = sep_format.load_resources()
    own = [
        Wording(i.text.replace("<sep>", token), "none", i.position, i.register, i.length) for i in res.train
    ]
    reserved = [i.text.replace("<sep>", token) for i in (*res.heldout, *res.negative)]
    seed = wording_seed(cfg)
    pool = build_pool(sources, own, own[0], options, dataset_filters(cfg, [], reserved), runtime, seed)
    refuse_empty(pool, sources)
    rows = [*splits["train"], *splits.get("seen_wordings", [])]
    found = {id(r): sep_found(r, token) for r in rows}
    out = dict(splits)
    trained = [own[0]]  # without diversification the task keeps its one fixed wording
    if cfg.dataset.get("diversify_instructions", True):
        train_rng = random.Random(f"{seed}/train/wordings")
        out["train"], trained = _worded(splits["train"], found, pool.kept, train_rng, "train")
        seen_rng = random.Random(f"{seed}/seen")
        out["seen_wordings"], _ = _worded(
            splits.get("seen_wordings", []), found, trained, seen_rng, "seen_wordings"
        )
    matched = sum(f is not None for f in found.values())
    metrics = {"wordings/rows": float(len(rows)), "wordings/rows_matched": float(matched)}
    metrics.update(pool_metrics(pool, sources, int(options.filters.ngram)))
    unseen = [i.text.replace("<sep>", token) for i in res.heldout]  # what its unseen_wordings split asks
    metrics.update(_shares(pool.kept, [], trained, int(options.filters.ngram), unseen))
    return out, _report("the <sep> task's own instruction field", metrics, pool, pool.kept, [])


def sep_found(record: Record, token: str) -> Found | None:
    """A ``<sep>`` task record's user turn split into its instruction and its data block (any text a
    baseline put in front, such as ctg's prior description, stays in front)."""
    fact = _facts().get(record.get("fact_id", ""))
    index = first_user(record["messages"])
    if fact is None or index is None or "instruction" not in record:
        return None
    content = record["messages"][index]["content"]
    text = str(record["instruction"]).replace("<sep>", token)
    block = sep_format.data_block(fact, record["label"] == "yes")
    for position, body in (("before", f"{text}\n\n{block}"), ("after", f"{block}\n\n{text}")):
        if content.endswith(body):
            return Found(text, block, position, "\n\n", lead=content[: len(content) - len(body)])
    return None


@functools.cache
def _facts() -> dict[str, sep_format.Fact]:
    return {fact.id: fact for fact in sep_format.load_resources().facts}
