"""bf16-mixed against float32, same seeds: the rule that decides the default precision (issue 26).

Fixed before the runs: bf16 becomes the default only if, for every metric below and every compared
method, |mean over seeds of (bf16 - fp32) at the same seed| <= the fp32 runs' seed std (ddof=1).

    python notebooks/precision_check.py notebooks/results/precision_cpu/default notebooks/results/precision_cpu/sep_cpu

prints one Markdown table per folder (fp32 mean ± std, bf16 mean ± std, the paired difference with its
95% interval, and the rule's reading) and the verdict.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

from delia.tools.report import collect, paired_differences
from delia.tools.report.tables import mean_std

# the metrics named with the rule, before the runs (no others enter the verdict)
METRICS = (
    "eval/loss",
    "seen_wordings/format_acc",
    "unseen_wordings/format_acc",
    "negative/format_rate",
    "repr/pct_layer1",
    "retention/ppl_heldout_diverse_change",
    "retention/probe_acc_change",
)
FP32, BF16 = "32-true", "bf16-mixed"


def check(folder: Path) -> tuple[list[str], bool]:
    """The Markdown rows for one sweep folder and whether every metric passes the rule."""
    report = collect(folder)
    report.only_metrics = list(METRICS)
    rows, passed = [], True
    for diff in paired_differences(report, f"trainer.precision={FP32}"):
        method = diff.group["method"]
        jobs = {p: [j for j in report.finished if j.method == method and j.swept.get("trainer.precision") == p]
                for p in (FP32, BF16)}  # fmt: skip
        fp_mean, fp_std = mean_std(j.metrics.get(diff.metric, math.nan) for j in jobs[FP32])
        bf_mean, bf_std = mean_std(j.metrics.get(diff.metric, math.nan) for j in jobs[BF16])
        ok = abs(diff.mean) <= fp_std if math.isfinite(fp_std) else diff.mean == 0
        passed &= ok
        lo, hi = diff.interval
        rows.append(
            f"| {method} | {diff.metric} | {fp_mean:.3f} ± {fp_std:.3f} | {bf_mean:.3f} ± {bf_std:.3f} | "
            f"{diff.mean:+.3f} [{lo:+.3f}, {hi:+.3f}] | {'within' if ok else 'BEYOND'} |"
        )
    return rows, passed and bool(rows)  # nothing paired: nothing shown


def main(folders: list[str]) -> None:
    verdict = True
    for folder in folders:
        rows, passed = check(Path(folder))
        verdict &= passed
        print(f"\n{folder}\n")
        print(
            "| method | metric | float32 | bf16-mixed | bf16 - fp32, same seed [95%] | rule: within fp32 seed std? |"
        )
        print("|---|---|---|---|---|---|")
        print("\n".join(rows))
    print(f"\nverdict: {'bf16-mixed may become the default' if verdict else 'float32 stays the default'}")


if __name__ == "__main__":
    main(sys.argv[1:])
