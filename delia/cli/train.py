"""``delia-train``: compose the Hydra config and run the DELIA recipe (delia/recipe.py)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from delia.cli import CONF_DIR, checked_argv, run_reporting_errors


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _main(cfg: DictConfig) -> float | None:
    from delia.console import setup_console
    from delia.recipe import train

    setup_console()
    metrics = run_reporting_errors(train, cfg)
    # the value an hparams sweeper optimises (cfg.optimized_metric), if the config names one
    name = cfg.get("optimized_metric")
    return metrics.get(name) if name else None


main = checked_argv(_main)

if __name__ == "__main__":
    main()
