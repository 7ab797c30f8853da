"""The committed rerun tables regenerate from their raw files.

The verdict rows of the README and of the result reports quote ``report.md`` and ``paired.md`` of the
reruns (``sep_cpu_v2``, ``ratio_cpu_v2``, ``ratio_cpu_v2_exposure`` with ``ratio_cpu_v2_r64``, ``samples_cpu_v2``) and the
``against_<reference>/paired.md`` tables beside three of them; this test rebuilds every table from the committed jobs with
each ``delia-report`` command their report gives (its folders, ``--against``, ``--out`` and ``--metrics``) and
compares them byte for byte, so a table edited by hand, or raw files changed without the tables, fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from delia.tools.report import collect, write_report

REPO = Path(__file__).resolve().parents[3]
RESULTS = Path("notebooks") / "results"
# rerun folder -> (the report holding its delia-report command, its finished jobs)
RERUNS = {
    "sep_cpu_v2": (RESULTS / "sep_cpu" / "README.md", 30),  # 10 methods x 3 seeds
    "ratio_cpu_v2": (RESULTS / "ratio_cpu_v2" / "README.md", 12),  # ratios 4, 16, 0 and common_it at 60 steps
    # common_it and ratio 0 at 12 steps, read with ratio_cpu_v2's ratios 4 and 16 and ratio_cpu_v2_r64: x 3 seeds
    "ratio_cpu_v2_exposure": (RESULTS / "ratio_cpu_v2_exposure" / "README.md", 15),
    # delia and the four references at 8, 16, 32 and 64 examples: x 3 seeds
    "samples_cpu_v2": (RESULTS / "samples_cpu_v2" / "README.md", 60),
}


def report_commands(readme: Path, folder: str) -> list[tuple[list[Path], str, Path, list[str]]]:
    """Each ``delia-report <folder> [...] --against X [--out DIR] --metrics ...`` command in ``readme``."""
    pattern = (
        rf"delia-report (notebooks/results/{folder}(?: notebooks/results/\S+)*)"
        r" --against (\S+)(?: --out (\S+))? --metrics (\S+)"
    )
    found = re.findall(pattern, (REPO / readme).read_text())
    assert found, f"{readme}: no `delia-report notebooks/results/{folder} ... --against X --metrics ...`"
    return [
        ([Path(f) for f in folders.split()], against, Path(out or RESULTS / folder), metrics.split(","))
        for folders, against, out, metrics in found
    ]


@pytest.mark.parametrize("folder", sorted(RERUNS))
def test_rerun_tables_regenerate_from_the_committed_jobs(
    folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    readme, n_jobs = RERUNS[folder]
    monkeypatch.chdir(REPO)  # the table's title names the sweep dir as the command gave it
    for i, (folders, against, out, metrics) in enumerate(report_commands(readme, folder)):
        report = collect(*folders)
        report.only_metrics = metrics
        assert report.finished and not report.unfinished
        assert len(report.finished) == n_jobs
        write_report(report, tmp_path / str(i), against=against)
        # an --out folder keeps only its paired table (its report and plots were the main command's copies)
        for table in ("report.md", "paired.md") if out == RESULTS / folder else ("paired.md",):
            assert (tmp_path / str(i) / table).read_text() == (out / table).read_text(), out / table
