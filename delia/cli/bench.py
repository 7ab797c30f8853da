"""``delia-bench``: delia-train's throughput, sampling speed and memory, side by side with the peers."""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from delia.cli import CONF_DIR, checked_argv, run_reporting_errors
from delia.infra.files import write_json


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="bench")
def _main(cfg: DictConfig) -> None:
    from delia.console import setup_console
    from delia.tools.bench import run_bench, table

    setup_console()
    results = run_reporting_errors(run_bench, cfg)
    out = Path(cfg.bench.output)
    write_json(out, results)
    print(f"{table(results)}\n\ndelia-bench: wrote {out}")


main = checked_argv(_main, "bench")

if __name__ == "__main__":
    main()
