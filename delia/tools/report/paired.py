"""Differences from a reference method, paired by seed: the statistic a verdict reads.

``delia-report SWEEP_DIR --against common_it`` adds ``paired.md`` and ``paired.csv``: for every other
group of the summary (method and the other swept keys) and every metric, the difference from the
reference method's job *with the same seed*; ``--against trainer.precision=32-true`` compares the
settings of a swept key the same way, within each method; its mean over the pairs, and a 95% Student-t interval
(n-1 degrees of freedom).

Guarantees:

- only seeds that both the group and the reference finished count, and each pair's difference is listed;
- a reference that ran at one setting of a swept key (``common_it`` has no diverse ratio) is paired with
  every setting of that key; where the reference ran at several, a group is paired with the same setting;
- ``KEY=VALUE`` pairs within a method only: a method without a job at ``VALUE`` (``common_it`` against
  ``diverse.ratio=0``) has no pair, even where the reference jobs are all of one other method;
- the reading says what the interval allows: ``separates`` when it excludes 0, ``inconclusive`` when it
  does not, ``one pair`` when there is no interval. Nothing is called a difference on fewer than two pairs.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from delia.infra.errors import DeliaError
from delia.tools.report.jobs import REPLICATE_KEY, Job, Report, Value
from delia.tools.report.tables import fmt, group_value, sort_key

# two-sided 95% quantiles of Student's t by degrees of freedom (above 30: the normal's 1.96)
T975 = {
    1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262,
    10: 2.228, 12: 2.179, 15: 2.131, 20: 2.086, 25: 2.060, 30: 2.042,
}  # fmt: skip


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (the next smaller tabled df)."""
    if df < 1:
        raise ValueError("a t interval needs at least two pairs")
    if df > 30:
        return 1.96
    return T975[max(d for d in T975 if d <= df)]


@dataclass(frozen=True)
class Paired:
    """One group's paired differences from the reference on one metric."""

    group: dict[str, Value]
    metric: str
    diffs: tuple[float, ...]  # one per shared seed, in seed order
    seeds: tuple[Value, ...]

    @property
    def mean(self) -> float:
        return statistics.fmean(self.diffs) if self.diffs else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% t interval of the mean difference; NaNs with fewer than two pairs."""
        n = len(self.diffs)
        if n < 2:
            return math.nan, math.nan
        half = t975(n - 1) * statistics.stdev(self.diffs) / math.sqrt(n)
        return self.mean - half, self.mean + half

    @property
    def reading(self) -> str:
        if len(self.diffs) < 2:
            return "one pair" if self.diffs else "no pair"
        if not any(self.diffs):
            return "identical"
        lo, hi = self.interval
        return "separates" if lo > 0 or hi < 0 else "inconclusive"


def _value(job: Job, key: str) -> Value:
    """A job's value of a row key: its method, or a summary row key (:func:`group_value`)."""
    return job.method if key == "method" else group_value(job, key)


def _seed(job: Job) -> Value:
    """The job's seed, swept or not: a single-seed sweep's pairs still name their seed."""
    return job.config.get(REPLICATE_KEY)


def _setting(job: Job, keys: Sequence[str]) -> tuple[Value, ...]:
    return tuple(_value(job, k) for k in keys)


def split_reference(report: Report, reference: str) -> tuple[str, str]:
    """``common_it`` -> ``("method", "common_it")``; ``trainer.precision=32-true`` -> that key and value."""
    if "=" not in reference:
        return "method", reference
    key, value = reference.split("=", 1)
    if key not in report.swept_keys:
        raise DeliaError(
            f"--against {reference}: {key} is not a key the sweep varies; it varies {report.swept_keys}"
        )
    return key, value


def paired_differences(report: Report, reference: str) -> list[Paired]:
    """Every non-reference group's paired differences from ``reference``, per metric.

    ``reference`` is a method name (``common_it``), or ``KEY=VALUE`` for a swept key
    (``trainer.precision=32-true``): then each group is paired with the job of the same seed, method and
    other settings whose ``KEY`` has that value.
    """
    done = report.finished
    key, value = split_reference(report, reference)
    refs = [job for job in done if str(_value(job, key)) == value]
    if not refs:
        values = sorted({str(_value(job, key)) for job in done})
        raise DeliaError(f"--against {reference}: no finished job with {key} {value}; the sweep has {values}")
    other = [k for k in report.group_keys if k not in ("baseline", "ablation", "method", key)]
    row_keys = ["method", *other, *([key] if key != "method" else [])]
    # the keys the reference varies over: a group meets the reference at its own setting of them
    matched = [k for k in row_keys if k != key and len({_value(j, k) for j in refs}) > 1]
    if key != "method" and "method" not in matched:  # KEY=VALUE compares within a method, never across
        matched.insert(0, "method")
    by_seed = {(_seed(job), *_setting(job, matched)): job for job in refs}
    groups: dict[tuple[Value, ...], list[Job]] = {}
    for job in done:
        if str(_value(job, key)) != value:
            groups.setdefault(_setting(job, row_keys), []).append(job)
    out = []
    for setting, jobs in sorted(groups.items(), key=lambda item: sort_key(item[0])):
        group = dict(zip(row_keys, setting, strict=True))
        pairs = []
        for job in sorted(jobs, key=lambda j: sort_key((_seed(j),))):
            ref = by_seed.get((_seed(job), *_setting(job, matched)))
            if ref is not None:
                pairs.append((job, ref))
        for metric in report.metric_names:
            kept = [
                (_seed(job), job.metrics[metric] - ref.metrics[metric])
                for job, ref in pairs
                if math.isfinite(job.metrics.get(metric, math.nan))
                and math.isfinite(ref.metrics.get(metric, math.nan))
            ]
            out.append(Paired(group, metric, tuple(d for _, d in kept), tuple(s for s, _ in kept)))
    return out


def paired_rows(rows: Sequence[Paired]) -> list[dict[str, Any]]:
    """The differences as flat rows for ``paired.csv``."""
    out = []
    for row in rows:
        lo, hi = row.interval
        out.append({
            **row.group,
            "metric": row.metric,
            "n_pairs": len(row.diffs),
            "mean_diff": row.mean,
            "ci95_lo": lo,
            "ci95_hi": hi,
            "reading": row.reading,
            "per_seed": " ".join(f"{s}:{d:+.3f}" for s, d in zip(row.seeds, row.diffs, strict=True)),
        })  # fmt: skip
    return out


def paired_markdown(rows: Sequence[Paired], reference: str) -> str:
    """``paired.md``: one table, a row per group and metric."""
    flat = paired_rows(rows)
    if not flat:
        return f"# Paired by seed against {reference}\n\nNo group to compare.\n"
    leading = [k for k in flat[0] if k not in ("ci95_lo", "ci95_hi", "reading", "per_seed")]
    columns = [*leading, "95% interval", "reading", "per seed"]
    lines = [
        f"# Paired by seed against {reference}",
        "",
        f"Each row: the group minus `{reference}` at the same seed; mean over the pairs and its 95% Student-t"
        " interval; `separates` only where the interval excludes 0.",
        "",
        "| " + " | ".join(columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for row in flat:
        lo, hi = row["ci95_lo"], row["ci95_hi"]
        interval = f"[{lo:+.3f}, {hi:+.3f}]" if math.isfinite(lo) else ""
        cells = [fmt(row[k]) for k in leading]
        lines.append("| " + " | ".join([*cells, interval, row["reading"], row["per_seed"]]) + " |")
    return "\n".join(lines) + "\n"
