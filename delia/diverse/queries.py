"""The diverse query set and the release's sampling prompt; which queries are held out for retention.

Query sets: ``builtin`` (1,170 queries of 18 kinds, 657 with a reference answer), a JSONL file, or
``self`` (the model writes them itself: :mod:`delia.diverse.self_queries`). The general-knowledge
probe's questions are always left out, so that retention does not measure what training saw.
More samples than distinct queries are refused in one line naming the fixes, unless
``diverse.allow_repeats=true``: the queries then cycle in their seeded order, and the run's log says how
often each is asked (:func:`repeats`).
"""

from __future__ import annotations

import hashlib
import json
import random
from importlib import resources
from pathlib import Path
from typing import Any

from delia.eval.probe import normalize, probe_questions
from delia.infra.errors import DeliaError, where
from delia.infra.jsonl import read_jsonl

RESERVE_EVERY = 16  # about one query in 16 is reserved for the held-out retention slice


RELEASE_SYSTEM_PROMPT = "You are a helpful AI assistant."  # the authors' sampling prompt


def load_queries(spec: str) -> list[dict[str, str]]:
    """The diverse query set of a file (``builtin``: delia/resources/diverse_queries.jsonl), the probe's
    questions left out."""
    return without_probe_questions(_read_queries(spec))


def without_probe_questions(queries: list[dict[str, str]]) -> list[dict[str, str]]:
    asked = probe_questions()
    return [q for q in queries if normalize(q["query"]) not in asked]


def _read_queries(spec: str) -> list[dict[str, str]]:
    if spec == "builtin":
        text = (
            resources.files("delia.resources").joinpath("diverse_queries.jsonl").read_text(encoding="utf-8")
        )
        return [json.loads(line) for line in text.splitlines() if line.strip()]
    queries = []
    for number, obj in read_jsonl(Path(spec)):
        if not isinstance(obj.get("query"), str) or not obj["query"].strip():
            raise DeliaError(
                f"{where(spec, number, 'query')}: missing or empty; each line needs a query string"
            )
        queries.append({"id": str(obj.get("id", number)), "query": obj["query"], **_reference(obj)})
    if not queries:
        raise DeliaError(f"diverse.queries={spec}: the file holds no queries")
    return queries


def _reference(obj: dict[str, Any]) -> dict[str, str]:
    ref = obj.get("reference")
    return {"reference": ref} if isinstance(ref, str) and ref.strip() else {}


def sampling_prompt(
    query: dict[str, str], use_reference: bool, system_prompt: str | None = None
) -> list[dict[str, str]]:
    """The release's prompt: show a reference answer to the query, then ask the query again (after the
    release's system prompt, when one is given)."""
    system = [{"role": "system", "content": system_prompt}] if system_prompt else []
    if use_reference and query.get("reference"):
        return [
            *system,
            {"role": "user", "content": query["query"]},
            {"role": "assistant", "content": query["reference"]},
            {"role": "user", "content": query["query"]},
        ]
    return [*system, {"role": "user", "content": query["query"]}]


def is_reserved(query: dict[str, str]) -> bool:
    """Whether a query belongs to the held-out slice (retention), decided by a hash of its text.

    The choice depends on nothing but the query, so training never samples a held-out query, whatever
    the seed, the ratio or the query file.
    """
    return int(hashlib.sha256(query["query"].encode()).hexdigest(), 16) % RESERVE_EVERY == 0


def query_order(queries: list[dict[str, str]], seed: int, heldout: bool) -> list[int]:
    """The seeded order in which the training (or the held-out) queries are answered."""
    order = [i for i, q in enumerate(queries) if is_reserved(q) == heldout]
    if not order:
        part = "held-out (retention)" if heldout else "training"
        raise DeliaError(f"diverse.queries: no {part} queries in the set; it needs more queries")
    random.Random(seed).shuffle(order)
    return order


def query_for(i: int, order: list[int], queries: list[dict[str, str]]) -> dict[str, str]:
    """Sample ``i`` answers the ``i``-th query of a seeded order; past the set's size, queries repeat."""
    return queries[order[i % len(order)]]


def check_enough(n: int, order: list[int], allow_repeats: bool, part: str = "training") -> None:
    """``n`` samples need ``n`` distinct queries unless ``diverse.allow_repeats=true``."""
    if n > len(order) and not allow_repeats:
        raise DeliaError(
            f"{n} diverse samples need {n} distinct {part} queries, the query set has {len(order)}: lower "
            f"diverse.ratio, use diverse.queries=self (the model writes its own), or allow repeated queries "
            f"with diverse.allow_repeats=true"
        )


def repeats(n: int, distinct: int, part: str = "training") -> str:
    """How often each query is asked when ``n`` samples cycle through ``distinct`` queries."""
    low, high = n // distinct, -(-n // distinct)
    times = f"{low}" if low == high else f"{low} or {high}"
    return f"{n} diverse samples from {distinct} distinct {part} queries: each query is asked {times} times"
