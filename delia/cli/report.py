"""``delia-report SWEEP_DIR``: one table and a few plots for every job of a Hydra multirun sweep."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from delia.dashboard.report import attach_report
from delia.infra.errors import report_errors
from delia.tools.report import collect, write_report


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """``SWEEP_DIR [MORE_DIR ...] [--out DIR] [--metrics A,B,...]``."""
    parser = argparse.ArgumentParser(
        prog="delia-report",
        description="Collect every job of a Hydra multirun sweep into report.csv, report.md and PNG plots.",
    )
    parser.add_argument(
        "sweep_dirs",
        type=Path,
        nargs="+",
        metavar="SWEEP_DIR",
        help="a multirun dir, e.g. outputs/multirun/<date>/<time>; several are read as one sweep (the report"
        " goes to the first)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, metavar="DIR", help="where to write the report (default: SWEEP_DIR)"
    )
    parser.add_argument(
        "--rescore",
        action="store_true",
        help="first score every job's samples.json again with today's format measures (rescored.json)",
    )
    parser.add_argument(
        "--metrics",
        default=None,
        metavar="A,B,...",
        help="only these metrics, in this order (default: every metric the jobs report)",
    )
    parser.add_argument(
        "--against",
        default=None,
        metavar="METHOD|KEY=VALUE",
        help="also paired.md/.csv: every other method minus METHOD (or every other value of a swept KEY minus"
        " VALUE) at the same seed, with a 95%% t interval",
    )
    return parser.parse_args(argv)


def rescore(sweep_dir: Path) -> list[Path]:
    """Re-score every job under ``sweep_dir`` with the tokenizer of the model its first job names."""
    import os

    from omegaconf import OmegaConf
    from transformers import AutoTokenizer

    from delia.infra.errors import DeliaError
    from delia.model import base_model_folder
    from delia.tools.rescore import rescore_tree

    configs = sorted(sweep_dir.rglob("config.yaml"))
    if not configs:
        raise DeliaError(f"{sweep_dir}: no job (config.yaml) to re-score")
    model_cfg = OmegaConf.load(configs[0]).model
    cache_dir = Path(
        os.environ.get("DELIA_CACHE_DIR") or Path(os.environ.get("DELIA_OUTPUT_ROOT", "outputs")) / "cache"
    )
    tokenizer = AutoTokenizer.from_pretrained(base_model_folder(model_cfg, cache_dir))
    return rescore_tree(sweep_dir, tokenizer)


@report_errors
def main(argv: Sequence[str] | None = None) -> None:
    """``delia-report SWEEP_DIR [MORE_DIR ...] [--out DIR]``: print the Markdown report and the files written."""
    from delia.console import setup_console

    args = parse_args(argv)
    setup_console(standalone=True)
    sweep_dir = args.sweep_dirs[0]
    if args.rescore:
        rescored = sum(len(rescore(folder)) for folder in args.sweep_dirs)
        print(f"re-scored {rescored} jobs' generations (rescored.json)")
    report = collect(*args.sweep_dirs)
    if args.metrics:
        report.only_metrics = [name.strip() for name in args.metrics.split(",") if name.strip()]
    paths, markdown = write_report(report, args.out, against=args.against)
    print(markdown)
    for path in paths:
        print(f"wrote {path}")
    attached = attach_report(sweep_dir, paths)
    if attached:
        print(
            f"attached the plots to the sweep's {attached} MLflow runs (artifacts report/): delia-dashboard {sweep_dir}"
        )


if __name__ == "__main__":
    main()
