"""The DELIA training recipe, from setup to cleanup, in the order of the paper's algorithm.

1. load the pretrained model (the embedded SmolLM2 by default);
2. build the downstream task (instructions anisotropically diversified for DELIA);
3. self-sample the diverse data from the same model (cached);
4. add the new special token and initialise its embedding row; wrap with LoRA;
5-6. train on the downstream examples mixed with the diverse examples (the schedule decides how);
7. save the adapter, evaluate, write ``metrics.json``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from delia.callbacks import PreemptionCheckpoint
from delia.checkpoint_io import SafetensorsCheckpointIO
from delia.config import plain, refuse_finished_run, validate
from delia.data import chat, sep_format
from delia.data.datamodule import DeliaDataModule
from delia.data.mixing import diverse_count
from delia.errors import DeliaError
from delia.evaluate import evaluate, results_table, write_json
from delia.launch import hydra_mode, refuse_relaunch_in_multirun, setup_gpu_pool
from delia.locking import atomic_write_text, file_lock
from delia.loggers import ResumableCSVLogger
from delia.models import (
    add_special_token,
    init_new_token_rows,
    load_base,
    resize_for_tokenizer,
    save_adapter,
    wrap_peft,
)
from delia.module import DeliaModule
from delia.sampling import self_sample
from delia.schedule import build_schedule
from delia.security import redacted_config

log = logging.getLogger(__name__)


def build_task(dataset_cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """The downstream splits: the built-in sep_format task or any chat dataset."""
    if dataset_cfg.kind == "sep_format":
        return sep_format.build_splits(dataset_cfg)
    return chat.build_splits(dataset_cfg)


def model_identity(model_cfg: DictConfig) -> dict[str, Any]:
    """What identifies the sampling model in the diverse cache key."""
    keys = (
        "name",
        "source",
        "path",
        "revision",
        "gguf_file",
        "gguf_path",
        "dtype",
        "architecture",
        "init_seed",
    )
    values = plain(model_cfg)
    return {k: values[k] for k in keys if k in values}


def prior_description(cfg: DictConfig) -> str | None:
    return (
        sep_format.prior_description(cfg.dataset.special_token) if cfg.dataset.kind == "sep_format" else None
    )


def add_new_tokens(model: Any, tokenizer: Any, cfg: DictConfig) -> dict[str, int]:
    """Step 2 of the algorithm: add the special token, resize, initialise its row."""
    token = cfg.dataset.get("special_token")
    if not token:
        return {}
    token_id = add_special_token(tokenizer, token)
    resize_for_tokenizer(model, tokenizer)
    init_new_token_rows(
        model, tokenizer, [token_id], cfg.token_init.strategy, prior_description(cfg), cfg.seed
    )
    return {token: token_id}


def sweep_group() -> dict[str, str]:
    """Under a Hydra multirun, group the jobs' wandb runs by sweep."""
    from hydra.core.hydra_config import HydraConfig

    if hydra_mode() != "MULTIRUN":
        return {}
    hydra = HydraConfig.get()
    return {"group": Path(hydra.sweep.dir).as_posix().replace("/", "_"), "job_type": f"job{hydra.job.num}"}


def build_loggers(cfg: DictConfig) -> list[Any]:
    if "wandb" in cfg.logger and not os.environ.get("WANDB_API_KEY") and not os.environ.get("WANDB_MODE"):
        os.environ["WANDB_MODE"] = "offline"  # no key: log offline, `wandb sync` later
    loggers = [
        instantiate(conf, **(sweep_group() if name == "wandb" else {}))
        for name, conf in cfg.logger.items()
        if "_target_" in conf
    ]
    for logger in loggers:
        logger.log_hyperparams(redacted_config(cfg))
    return loggers


def log_results(loggers: list[Any], results: dict[str, Any], samples: dict[str, list], step: int) -> None:
    """Final metrics to every logger; the scored generations as a wandb table."""
    numbers = {k: v for k, v in results["metrics"].items() if isinstance(v, int | float)}
    for logger in loggers:
        if isinstance(logger, ResumableCSVLogger):
            logger.append_only()
        logger.log_metrics(numbers, step)
        if type(logger).__name__ == "WandbLogger":
            rows = [[split, row["label"], row["reply"]] for split, rows in samples.items() for row in rows]
            logger.log_table(key="eval/generations", columns=["split", "label", "reply"], data=rows)


def finish_loggers(loggers: list[Any], run_dir: Path) -> None:
    for logger in loggers:
        if type(logger).__name__ == "WandbLogger":
            import wandb

            offline = os.environ.get("WANDB_MODE") == "offline"
            wandb.finish()  # one wandb run per job, also under multirun
            if offline:
                print(f"wandb: logged offline; upload with: wandb sync {run_dir}/wandb/offline-run-*")


def wanted_callback(conf: DictConfig, cfg: DictConfig) -> bool:
    """A callback entry with a target; the representation tracker only when the task adds a token."""
    if "_target_" not in conf:
        return False
    return not (conf._target_.endswith("RepresentationTracker") and not cfg.dataset.get("special_token"))


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path) -> str | None:
    """The checkpoint a resumed run continues from.

    ``resume=true`` or ``ckpt_path=last``: ``<run dir>/checkpoints/last.ckpt`` must exist;
    ``resume=auto``: that checkpoint if it exists (a requeued job), else a fresh start;
    ``ckpt_path=<file>``: that file.
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    if str(cfg.resume) == "auto":
        return str(last) if last.is_file() else None
    wanted = "last" if cfg.resume else cfg.ckpt_path
    if not wanted:
        return None
    path = last if wanted == "last" else Path(wanted)
    if not path.is_file():
        raise DeliaError(
            f"{path}: no checkpoint to resume from; pass hydra.run.dir=<the killed run's dir> "
            f"(or ckpt_path=<a .ckpt file>), or start a new run without resume"
        )
    return str(path)


def is_launcher_rank() -> bool:
    """False in the extra ranks that torchrun/srun start: they share rank 0's run dir."""
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run DELIA (or a baseline, by config) and return the metrics."""
    validate(cfg)
    refuse_relaunch_in_multirun(cfg, hydra_mode())
    setup_gpu_pool(cfg)
    run_dir = Path(cfg.paths.run_dir)
    refuse_finished_run(run_dir, cfg.overwrite)
    ckpt_path = checkpoint_to_resume(cfg, run_dir)
    if not is_launcher_rank():
        return fit_and_evaluate(cfg, run_dir, ckpt_path)
    with file_lock(run_dir / ".delia.lock", wait=False, what=f"run dir {run_dir}"):
        save_config(cfg, run_dir / "config.yaml")
        return fit_and_evaluate(cfg, run_dir, ckpt_path)


def save_config(cfg: DictConfig, path: Path) -> None:
    """The resolved config, secrets redacted, written atomically."""
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(redacted_config(cfg))))


def fit_and_evaluate(cfg: DictConfig, run_dir: Path, ckpt_path: str | None) -> dict[str, Any]:
    """Steps 1-7 of the algorithm (see the module docstring)."""
    L.seed_everything(cfg.seed, workers=True)
    cache_dir = Path(cfg.paths.cache_dir)
    model, tokenizer = load_base(cfg.model, cache_dir)
    splits = build_task(cfg.dataset)
    n_diverse = diverse_count(len(splits["train"]), float(cfg.diverse.ratio))
    identity = model_identity(cfg.model)
    diverse = self_sample(model, tokenizer, cfg.diverse, n_diverse, cache_dir, identity) if n_diverse else []
    log.info(
        "downstream examples: %d, diverse examples: %d (ratio %s)",
        len(splits["train"]),
        len(diverse),
        cfg.diverse.ratio,
    )

    # re-seed: what follows (new-row init, LoRA init, dropout) must not depend on whether the
    # diverse data came from the cache or was sampled just now
    L.seed_everything(cfg.seed, workers=True)
    new_tokens = add_new_tokens(model, tokenizer, cfg)
    peft_model = wrap_peft(
        model, cfg.peft, list(new_tokens.values()), cfg.baseline.get("train_new_tokens", True)
    )
    peft_model.train()  # from_pretrained returns eval mode, which would switch LoRA dropout off
    schedule = build_schedule(cfg.schedule)
    datamodule = DeliaDataModule(
        tokenizer,
        task_records=splits["train"],
        diverse_records=diverse,
        eval_records=splits.get("eval", []),
        schedule=schedule,
        max_steps=cfg.trainer.max_steps,
        batch_size=cfg.data.batch_size,
        accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
        max_length=cfg.data.max_length,
        on_overlength=cfg.data.on_overlength,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
    )
    module = DeliaModule(peft_model, schedule, instantiate(cfg.optimizer), instantiate(cfg.lr_scheduler))
    loggers = build_loggers(cfg)
    callbacks = [instantiate(conf) for conf in cfg.callbacks.values() if wanted_callback(conf, cfg)]
    # checkpoints are safetensors files, never pickle (allow_pickle=true reads old pickle .ckpt files)
    plugins = [SafetensorsCheckpointIO(allow_pickle=bool(cfg.allow_pickle))]
    trainer: L.Trainer = instantiate(
        cfg.trainer, logger=loggers or False, callbacks=callbacks, plugins=plugins
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)

    preempted = [
        c.saved_at_step
        for c in callbacks
        if isinstance(c, PreemptionCheckpoint) and c.saved_at_step is not None
    ]
    results: dict[str, Any] = {}
    if preempted:
        print(
            f"\nDELIA run preempted at step {preempted[0]}; continue it with: resume=true hydra.run.dir={run_dir}"
        )
    elif trainer.is_global_zero:
        save_adapter(peft_model, tokenizer, run_dir / "adapter", new_tokens, {"model": identity})
        results = evaluate(peft_model, tokenizer, splits, cfg)
        results["metrics"]["train/downstream_examples"] = len(splits["train"])
        results["metrics"]["train/diverse_examples"] = len(diverse)
        for key in ("train/seen_task_examples", "train/seen_diverse_examples"):
            results["metrics"][key] = int(trainer.callback_metrics.get(key, -1))
        samples = results.pop("samples")
        write_json(run_dir / "samples.json", samples)
        write_json(
            run_dir / "metrics.json",
            {**results, "baseline": cfg.baseline.name, "ablation": cfg.ablation.name},
        )
        log_results(loggers, results, samples, trainer.global_step)
        print(f"\nDELIA run finished: {run_dir}\n{results_table(results['metrics'])}")
    finish_loggers(loggers, run_dir)
    return results.get("metrics", {})
