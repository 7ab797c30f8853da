"""delia-report --against: differences from a reference method paired by seed, with a t interval."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from delia.cli.report import main
from delia.infra.errors import DeliaError
from delia.tools.report import collect, paired_differences, write_report
from delia.tools.report.paired import t975
from tests.unit.tools.test_report import add_override, fake_job


def sweep_of(tmp_path: Path, values: dict[tuple[str, int], float]) -> Path:
    """One fake job per (baseline, seed) with metric ``m``; train size 8 for every job."""
    sweep = tmp_path / "sweep"
    for num, ((baseline, seed), value) in enumerate(values.items()):
        fake_job(sweep, num, baseline, "none", 8, seed, {"m": value})
    return sweep


def one(rows, method: str):
    (row,) = [r for r in rows if r.group["method"] == method and r.metric == "m"]
    return row


def test_pairs_by_seed_and_gives_the_t_interval(tmp_path: Path) -> None:
    values = {("common_it", s): 0.5 for s in (1, 2, 3)}
    values |= {("delia", 1): 0.6, ("delia", 2): 0.7, ("delia", 3): 0.65}
    row = one(paired_differences(collect(sweep_of(tmp_path, values)), "common_it"), "delia")
    assert row.seeds == (1, 2, 3) and row.diffs == pytest.approx((0.1, 0.2, 0.15))
    half = 4.303 * 0.05 / math.sqrt(3)  # t(0.975, 2) x std 0.05 / sqrt(3)
    assert row.interval == pytest.approx((0.15 - half, 0.15 + half))
    assert row.reading == "separates"


def test_an_interval_that_crosses_zero_is_inconclusive_and_one_seed_has_none(tmp_path: Path) -> None:
    values = {("common_it", s): 0.5 for s in (1, 2, 3)}
    values |= {("delia", 1): 0.6, ("delia", 2): 0.4, ("delia", 3): 0.55, ("dmt", 2): 0.9}
    rows = paired_differences(collect(sweep_of(tmp_path, values)), "common_it")
    assert one(rows, "delia").reading == "inconclusive"
    dmt = one(rows, "dmt")
    assert dmt.seeds == (2,) and dmt.reading == "one pair" and math.isnan(dmt.interval[0])


def test_seeds_without_a_reference_are_left_out_and_zero_differences_read_identical(tmp_path: Path) -> None:
    values = {("common_it", 1): 0.5, ("common_it", 2): 0.5, ("delia", 1): 0.5, ("delia", 2): 0.5}
    values |= {("delia", 3): 0.9}  # no common_it seed 3: not paired
    row = one(paired_differences(collect(sweep_of(tmp_path, values)), "common_it"), "delia")
    assert row.seeds == (1, 2) and row.reading == "identical"


def test_a_single_seed_sweep_names_its_seed(tmp_path: Path) -> None:
    values = {("common_it", 7): 0.5, ("delia", 7): 0.6}  # seed not swept: one value only
    row = one(paired_differences(collect(sweep_of(tmp_path, values)), "common_it"), "delia")
    assert row.seeds == (7,) and row.diffs == pytest.approx((0.1,))


def test_an_unknown_reference_names_the_methods_there_are(tmp_path: Path) -> None:
    report = collect(sweep_of(tmp_path, {("delia", 1): 0.5}))
    with pytest.raises(
        DeliaError, match=r"--against common_it: no finished job with method common_it; .*'delia'"
    ):
        paired_differences(report, "common_it")
    with pytest.raises(
        DeliaError, match=r"--against trainer.precision=32-true: trainer.precision is not a key"
    ):
        paired_differences(report, "trainer.precision=32-true")


def test_a_swept_key_is_compared_within_each_method(tmp_path: Path) -> None:
    """``--against trainer.precision=32-true``: bf16 minus fp32 for each method at the same seed."""
    sweep = tmp_path / "sweep"
    values = {("delia", "32-true"): 0.5, ("delia", "bf16-mixed"): 0.6}
    values |= {("common_it", "32-true"): 0.2, ("common_it", "bf16-mixed"): 0.1}
    num = 0
    for seed in (1, 2):
        for (baseline, precision), value in values.items():
            fake_job(sweep, num, baseline, "none", 8, seed, {"m": value + seed / 100})
            add_override(sweep / str(num), f"trainer.precision={precision}")
            num += 1
    rows = paired_differences(collect(sweep), "trainer.precision=32-true")
    assert {r.group["trainer.precision"] for r in rows} == {"bf16-mixed"}
    assert one(rows, "delia").diffs == pytest.approx((0.1, 0.1))
    assert one(rows, "common_it").diffs == pytest.approx((-0.1, -0.1))


def test_a_swept_key_never_pairs_a_method_with_another_methods_reference(tmp_path: Path) -> None:
    """``--against diverse.ratio=0`` where only delia ran at ratio 0: common_it gets no pair, not delia's."""
    sweep = tmp_path / "sweep"
    num = 0
    for seed in (1, 2):
        for baseline, ratio, value in (("delia", 0, 0.1), ("delia", 4, 0.5), ("common_it", None, 0.3)):
            fake_job(sweep, num, baseline, "none", 8, seed, {"m": value * seed})
            if ratio is not None:
                add_override(sweep / str(num), f"diverse.ratio={ratio}")
            num += 1
    rows = paired_differences(collect(sweep), "diverse.ratio=0")
    assert one(rows, "delia").diffs == pytest.approx((0.4, 0.8))
    common_it = one(rows, "common_it")
    assert common_it.diffs == () and common_it.reading == "no pair"


def test_write_report_with_against_writes_paired_files(tmp_path: Path) -> None:
    values = {("common_it", 1): 0.5, ("common_it", 2): 0.4, ("delia", 1): 0.7, ("delia", 2): 0.5}
    sweep = sweep_of(tmp_path, values)
    paths, markdown = write_report(collect(sweep), tmp_path / "out", against="common_it")
    assert tmp_path / "out" / "paired.md" in paths and (tmp_path / "out" / "paired.csv").is_file()
    assert "| delia | m | 2 | 0.150 |" in markdown and "1:+0.200 2:+0.100" in markdown


def test_t_quantiles() -> None:
    assert t975(2) == 4.303 and t975(11) == 2.228 and t975(100) == 1.96
    with pytest.raises(ValueError):
        t975(0)


def test_a_reference_in_another_folder_is_paired_and_the_report_goes_to_the_first(tmp_path: Path) -> None:
    refs, runs = tmp_path / "refs", tmp_path / "runs"
    for seed, value in ((1, 0.5), (2, 0.4)):
        fake_job(refs, seed - 1, "common_it", "none", 8, seed, {"m": value})
        fake_job(runs, seed - 1, "delia", "none", 8, seed, {"m": value + 0.1 * seed})
    report = collect(refs, runs)
    assert report.sweep_dir == refs and len(report.finished) == 4
    row = one(paired_differences(report, "common_it"), "delia")
    assert row.seeds == (1, 2) and row.diffs == pytest.approx((0.1, 0.2))
    with pytest.raises(DeliaError, match="missing: no such directory"):
        collect(refs, tmp_path / "missing")
    main([str(refs), str(runs), "--against", "common_it", "--metrics", "m"])
    assert "| delia | m | 2 |" in (refs / "paired.md").read_text() and not (runs / "paired.md").exists()
