"""``delia-report SWEEP_DIR``: one table and a few plots for every job of a Hydra multirun sweep."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from delia.dashboard.report import attach_report
from delia.infra.errors import report_errors
from delia.tools.report import collect, write_report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``SWEEP_DIR [--out DIR] [--metrics A,B,...]``."""
    parser = argparse.ArgumentParser(
        prog="delia-report",
        description="Collect every job of a Hydra multirun sweep into report.csv, report.md and PNG plots.",
    )
    parser.add_argument(
        "sweep_dir",
        type=Path,
        metavar="SWEEP_DIR",
        help="a multirun dir, e.g. outputs/multirun/<date>/<time>",
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="where to write the report (default: SWEEP_DIR)"
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="A,B,...",
        help="only these metrics, in this order (default: every metric the jobs report)",
    )
    return parser.parse_args(argv)


@report_errors
def main(argv: Sequence[str] | None = None) -> None:
    """``delia-report SWEEP_DIR [--out DIR]``: print the Markdown report and the files written."""
    from delia.console import setup_console

    args = parse_args(argv)
    setup_console(standalone=True)
    report = collect(args.sweep_dir)
    if args.metrics:
        report.only_metrics = [name.strip() for name in args.metrics.split(",") if name.strip()]
    paths, markdown = write_report(report, args.out)
    print(markdown)
    for path in paths:
        print(f"wrote {path}")
    attached = attach_report(args.sweep_dir, paths)
    if attached:
        print(
            f"attached the plots to the sweep's {attached} MLflow runs (artifacts report/): delia-dashboard {args.sweep_dir}"
        )


if __name__ == "__main__":
    main()
