"""``delia-sample``: self-sample the diverse data into the cache that ``delia-train`` will reuse.

It takes the same config as ``delia-train`` (same model, dataset and diverse settings give the same
cache key), e.g. ``delia-sample diverse.ratio=260 dataset.train_size=100``.
"""

from __future__ import annotations

from pathlib import Path

import hydra
from omegaconf import DictConfig

from delia.cli import CONF_DIR, checked_argv, run_reporting_errors


def sample(cfg: DictConfig) -> int:
    from delia.config import validate
    from delia.data.mixing import diverse_count, diverse_ratio
    from delia.dataset import build_splits
    from delia.diverse import self_sample
    from delia.model import base_model_folder, load_base, model_identity

    validate(cfg)
    cache_dir = Path(cfg.paths.cache_dir)
    n_task = len(build_splits(cfg.dataset)["train"])
    n = diverse_count(n_task, diverse_ratio(cfg.diverse))
    if n == 0:
        print("delia-sample: diverse ratio is 0 (or diverse=none): nothing to sample")
        return 0
    model, tokenizer = load_base(cfg.model, cache_dir)
    folder = base_model_folder(cfg.model, cache_dir)
    samples = self_sample(
        model, tokenizer, cfg.diverse, n, cache_dir, model_identity(cfg.model), model_path=folder
    )
    print(
        f"delia-sample: {len(samples)} diverse samples ready ({n_task} downstream x ratio {diverse_ratio(cfg.diverse)})"
    )
    return len(samples)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def _main(cfg: DictConfig) -> None:
    from delia.console import setup_console

    setup_console()
    run_reporting_errors(sample, cfg)


main = checked_argv(_main)

if __name__ == "__main__":
    main()
