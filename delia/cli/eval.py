"""``delia-eval run_dir=...``: evaluate a finished run's adapter and rewrite its ``metrics.json``.

Evaluation settings can be overridden: ``delia-eval run_dir=outputs/runs/... eval.max_new_tokens=128``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import hydra
from omegaconf import DictConfig, OmegaConf

from delia.cli import CONF_DIR, checked_argv, run_reporting_errors
from delia.infra.errors import DeliaError


def run_config(run_dir: Path) -> DictConfig:
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise DeliaError(f"{path} not found: run_dir must be a directory written by delia-train")
    return OmegaConf.load(path)  # type: ignore[return-value]


def earlier_metrics(run_dir: Path) -> dict[str, Any]:
    """The metrics the training run wrote, if its metrics.json is readable."""
    try:
        return dict(json.loads((run_dir / "metrics.json").read_text()).get("metrics", {}))
    except (OSError, ValueError, AttributeError):
        return {}


def evaluate_run(cfg: DictConfig) -> dict[str, Any]:
    from delia.baselines import prompted_task
    from delia.dataset import loss_split, prior_description
    from delia.dataset.wordings import Runtime, apply_wordings
    from delia.eval.evaluate import evaluate, results_table
    from delia.infra.files import write_json
    from delia.model import load_adapter

    run_dir = Path(cfg.run_dir)
    train_cfg = run_config(run_dir)
    train_cfg.eval = cfg.eval
    model, tokenizer = load_adapter(run_dir / "adapter", train_cfg.model, train_cfg.paths.cache_dir)
    splits = prompted_task(train_cfg)
    # the run's wording pool, as it trained (model-written wordings come from the cache that run filled)
    cache_dir = Path(train_cfg.paths.cache_dir)
    splits, _ = apply_wordings(train_cfg, splits, Runtime(model, tokenizer, train_cfg.model, cache_dir))
    description = prior_description(train_cfg.dataset)
    results = evaluate(model, tokenizer, splits, train_cfg, loss_split(splits), description)
    # what evaluation does not recompute (retention before/after, training counts) is kept
    results["metrics"] = {**earlier_metrics(run_dir), **results["metrics"]}
    write_json(run_dir / "samples.json", results.pop("samples"))
    payload = {
        **results,
        "baseline": train_cfg.baseline.name,
        "ablation": train_cfg.ablation.name,
        "evaluated_by": "delia-eval",
    }
    write_json(run_dir / "metrics.json", payload)
    print(f"delia-eval: {run_dir}\n{results_table(results['metrics'])}")
    return results["metrics"]


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="eval_run")
def _main(cfg: DictConfig) -> None:
    from delia.console import setup_console

    setup_console()
    run_reporting_errors(evaluate_run, cfg)


main = checked_argv(_main, "eval_run")

if __name__ == "__main__":
    main()
