"""The committed rerun tables regenerate from their raw files.

The verdict rows of the README and of the result reports quote ``sep_cpu_v2/report.md`` and
``sep_cpu_v2/paired.md``; this test rebuilds both from the committed jobs (``s1/``, ``s2/``, ``s3/``) with the
metrics of the command in ``notebooks/results/sep_cpu/README.md`` and compares them byte for byte, so a
table edited by hand, or raw files changed without the tables, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from delia.tools.report import collect, write_report

REPO = Path(__file__).resolve().parents[3]
SEP_CPU_V2 = REPO / "notebooks" / "results" / "sep_cpu_v2"
SEP_CPU_V2_METRICS = [
    "seen_wordings/format_begins",
    "seen_wordings/format_acc",
    "unseen_wordings/format_begins",
    "unseen_wordings/format_acc",
    "unseen_wordings/cut",
    "unseen_wordings/label_acc",
    "unseen_wordings/label_n",
    "negative/format_rate",
    "negative/complete_rate",
    "repr/pct_layer1_step0",
    "repr/pct_layer1_change",
    "repr/l2_layer1_step0",
    "repr/l2_layer1_change",
    "repr/rel_l2_layer1_change",
    "retention/ppl_heldout_diverse_change",
    "retention/probe_acc_change",
    "protocol/task_exposure",
    "protocol/steps",
]


def test_the_readme_command_lists_the_metrics_this_test_regenerates() -> None:
    readme = (REPO / "notebooks" / "results" / "sep_cpu" / "README.md").read_text()
    command = f"--against common_it --metrics {','.join(SEP_CPU_V2_METRICS)} "
    assert command in readme


@pytest.mark.parametrize("table", ["report.md", "paired.md"])
def test_sep_cpu_v2_tables_regenerate_from_the_committed_jobs(
    table: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(REPO)  # the table's title names the sweep dir as the command gave it
    report = collect(SEP_CPU_V2.relative_to(REPO))
    report.only_metrics = SEP_CPU_V2_METRICS
    assert len(report.finished) == 30  # 10 methods x 3 seeds
    write_report(report, tmp_path, against="common_it")
    assert (tmp_path / table).read_text() == (SEP_CPU_V2 / table).read_text()
