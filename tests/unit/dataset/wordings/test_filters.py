"""Each filter rejects what it should (and is counted), the dataset's own wordings pass unchecked, and
the pool's measures are what their names say."""

from __future__ import annotations

import pytest

from delia.dataset.wordings.base import Wording, normalized
from delia.dataset.wordings.filters import (
    REASONS,
    Filters,
    distinct_2,
    filter_pool,
    mean_overlap,
    pool_metrics,
)

FILTERS = Filters(
    min_chars=12,
    max_chars=80,
    ngram=2,
    max_overlap=0.8,
    required=("<sep>", "yes"),
    forbidden=("json", "thought"),
    replies=(normalized("The bridge opened in 1903, yes."),),
    reserved=("Say yes or no in the <sep> format, never otherwise.",),
)
KEPT = Wording("Reply yes or no in the <sep> format.", "rules")


@pytest.mark.parametrize(
    ("text", "cut", "reason"),
    [
        ("Reply yes or no in the <sep> format, please.", True, "cut"),
        ("<sep> yes", False, "too_short"),
        ("Reply yes or no in the <sep> format. " * 3, False, "too_long"),
        ("Reply yes or no in the usual format.", False, "missing_required"),
        ("Answer yes or no in <sep>: a JSON object.", False, "forbidden"),
        ("Say it in <sep>, e.g. 'the bridge opened in 1903, yes'", False, "contains_reply"),
        ("Say yes or no in the <sep> format, never otherwise!", False, "reserved"),
        ("reply yes or NO in the <sep>  format", False, "duplicate"),
        ("Reply yes or no in the <sep> format now.", False, "near_duplicate"),
    ],
)
def test_each_filter_rejects_what_it_should(text: str, cut: bool, reason: str) -> None:
    pool = filter_pool([KEPT, Wording(text, "paraphrase", cut=cut)], FILTERS)
    assert pool.kept == [KEPT]
    assert [(w.text, r) for w, r in pool.rejected] == [(text, reason)]
    metrics = pool_metrics(pool, ["rules", "paraphrase"], 2)
    assert metrics[f"wordings/rejected_{reason}"] == 1.0
    assert sum(metrics[f"wordings/rejected_{r}"] for r in REASONS) == 1.0


def test_a_wording_that_passes_every_filter_is_kept_and_the_datasets_own_pass_unchecked() -> None:
    other = Wording("Could you decide, yes or no, using the <sep> format?", "paraphrase")
    own = Wording("ok", "none")  # too short, lacks <sep>: the data's own wording, kept as it is
    pool = filter_pool([own, KEPT, other, Wording("OK", "one")], FILTERS)
    assert pool.kept == [own, KEPT, other]
    assert [r for _, r in pool.rejected] == ["duplicate"]


def test_the_pool_measures() -> None:
    texts = ["a b c", "a b d", "x y"]
    assert distinct_2(texts) == 4 / 5  # bigrams ab bc ab bd xy: 4 distinct of 5
    assert mean_overlap(texts, 2) == pytest.approx((1 / 3 + 0 + 0) / 3)
    assert mean_overlap(["only one"], 2) == 0.0
    pool = filter_pool([Wording(t, "none") for t in texts], FILTERS)
    metrics = pool_metrics(pool, ["none"], 2)
    assert metrics["wordings/kept"] == metrics["wordings/distinct"] == metrics["wordings/kept_none"] == 3.0
    assert metrics["wordings/distinct2"] == 4 / 5
