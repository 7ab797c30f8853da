"""The DELIA training recipe, from setup to cleanup, in the order of the paper's algorithm.

1. load the pretrained model (the embedded SmolLM2 by default);
2. build the downstream task (instructions anisotropically diversified for DELIA);
3. self-sample the diverse data from the same model (cached);
4. add the new special token and initialise its embedding row; wrap with LoRA;
5-6. train on the downstream examples mixed with the diverse examples (the schedule decides how);
7. save the adapter, evaluate, write ``metrics.json``.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from omegaconf import DictConfig, OmegaConf

from delia import baselines, retention
from delia.callbacks import PreemptionCheckpoint
from delia.checkpoint_io import SafetensorsCheckpointIO
from delia.config import plain, refuse_finished_run, validate
from delia.data import chat, sep_format, translation
from delia.data.datamodule import DeliaDataModule
from delia.data.mixing import diverse_count, diverse_ratio
from delia.data.tokenize import encode_all
from delia.errors import DeliaError
from delia.evaluate import evaluate, results_table, write_json
from delia.launch import hydra_mode, refuse_relaunch_in_multirun, setup_gpu_pool
from delia.locking import atomic_write_text, file_lock
from delia.loggers import ResumableCSVLogger
from delia.models import (
    add_special_token,
    base_model_folder,
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
SEEN_KEYS = ("train/seen_task_examples", "train/seen_diverse_examples")


def build_task(cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """The downstream splits (sep_format, translation or any chat dataset), as the baseline prompts them.

    ``ctg`` puts the prior description in front of every prompt; ``dipmt`` adds dictionary hints.
    """
    kind = cfg.dataset.kind
    if kind == "sep_format":
        splits = sep_format.build_splits(cfg.dataset)
    elif kind == "translation":
        splits = translation.build_splits(cfg.dataset, bool(cfg.baseline.get("dictionary_hints", False)))
    else:
        splits = chat.build_splits(cfg.dataset)
    if cfg.baseline.get("prior_description_in_prompt"):
        description = prior_description(cfg) or ""
        splits = {name: baselines.with_prior_description(rows, description) for name, rows in splits.items()}
    return splits


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
            rows = [
                [split, row.get("label", row.get("reference", "")), row["reply"]]
                for split, rows in samples.items()
                for row in rows
            ]
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
    # disperse_merge keeps a checkpoint per portion (see disperse_then_merge)
    ckpt_path = None if cfg.baseline.name == "disperse_merge" else checkpoint_to_resume(cfg, run_dir)
    if not is_launcher_rank():
        return fit_and_evaluate(cfg, run_dir, ckpt_path)
    with file_lock(run_dir / ".delia.lock", wait=False, what=f"run dir {run_dir}"):
        save_config(cfg, run_dir / "config.yaml")
        return fit_and_evaluate(cfg, run_dir, ckpt_path)


def save_config(cfg: DictConfig, path: Path) -> None:
    """The resolved config, secrets redacted, written atomically."""
    atomic_write_text(path, OmegaConf.to_yaml(OmegaConf.create(redacted_config(cfg))))


def fit_and_evaluate(cfg: DictConfig, run_dir: Path, ckpt_path: str | None) -> dict[str, Any]:
    """Steps 1-7 of the algorithm (see the module docstring); the baseline decides how step 5-6 trains."""
    L.seed_everything(cfg.seed, workers=True)
    cache_dir = Path(cfg.paths.cache_dir)
    model, tokenizer = load_base(cfg.model, cache_dir)
    splits = build_task(cfg)
    # a bad downstream example (e.g. longer than data.max_length) names its file and line before any
    # sampling or measuring starts
    encode_all(tokenizer, splits["train"], cfg.data.max_length, cfg.data.on_overlength, "downstream data")
    identity = model_identity(cfg.model)
    n_diverse = diverse_count(len(splits["train"]), diverse_ratio(cfg.diverse))
    folder = base_model_folder(cfg.model, cache_dir)  # what diverse.sampler=vllm loads
    diverse = self_sample(model, tokenizer, cfg.diverse, n_diverse, cache_dir, identity, model_path=folder)
    log.info(
        "downstream examples: %d, diverse examples: %d (ratio %s)",
        len(splits["train"]),
        len(diverse),
        diverse_ratio(cfg.diverse),
    )
    heldout = (
        retention.heldout_slice(model, tokenizer, cfg.retention, cache_dir, identity)
        if cfg.retention.enabled
        else []
    )

    # re-seed: what follows (new-row init, LoRA init, dropout) must not depend on whether the
    # diverse data came from the cache or was sampled just now
    L.seed_everything(cfg.seed, workers=True)
    new_tokens = add_new_tokens(model, tokenizer, cfg)
    before = retention_before(model, tokenizer, heldout, cfg, identity, list(new_tokens.values()))
    peft_model = wrap_peft(model, cfg.peft, list(new_tokens.values()), cfg.baseline.train_new_tokens)
    peft_model.train()  # from_pretrained returns eval mode, which would switch LoRA dropout off
    loggers = build_loggers(cfg)
    if not cfg.baseline.train:
        trainer, preempted = None, None  # ctg, dipmt: prompting methods, evaluated as they are
    elif cfg.baseline.name == "disperse_merge":
        trainer, preempted = disperse_then_merge(cfg, peft_model, tokenizer, splits, loggers, run_dir)
    else:
        steps = int(cfg.trainer.max_steps)
        trainer, preempted = fit(
            cfg, peft_model, tokenizer, splits, diverse, loggers, steps, run_dir / "checkpoints", ckpt_path
        )

    results: dict[str, Any] = {}
    if preempted is not None:
        print(
            f"\nDELIA run preempted at step {preempted}; continue it with: resume=true hydra.run.dir={run_dir}"
        )
    elif trainer is None or trainer.is_global_zero:
        save_adapter(peft_model, tokenizer, run_dir / "adapter", new_tokens, {"model": identity})
        results = evaluate(peft_model, tokenizer, splits, cfg)
        if before is not None:
            items = retention.load_items(cfg.retention)
            after = retention.measure(
                peft_model, tokenizer, heldout, items, cfg.retention, cfg.data.max_length
            )
            results["metrics"].update(retention.retention_metrics(before, after))
        results["metrics"].update(training_counts(trainer, len(splits["train"]), len(diverse)))
        write_results(cfg, run_dir, results, loggers, trainer.global_step if trainer is not None else 0)
    finish_loggers(loggers, run_dir)
    return results.get("metrics", {})


def training_counts(trainer: L.Trainer | None, n_task: int, n_diverse: int) -> dict[str, int]:
    """The data sizes and the examples trained on per source (summed over ranks; 0 without training)."""
    counts = {"train/downstream_examples": n_task, "train/diverse_examples": n_diverse}
    for key in SEEN_KEYS:
        counts[key] = int(trainer.callback_metrics.get(key, -1)) if trainer is not None else 0
    return counts


def write_results(
    cfg: DictConfig, run_dir: Path, results: dict[str, Any], loggers: list[Any], step: int
) -> None:
    """samples.json, metrics.json, the final metrics to every logger, and the table on the console."""
    samples = results.pop("samples")
    write_json(run_dir / "samples.json", samples)
    write_json(
        run_dir / "metrics.json", {**results, "baseline": cfg.baseline.name, "ablation": cfg.ablation.name}
    )
    log_results(loggers, results, samples, step)
    print(f"\nDELIA run finished: {run_dir}\n{results_table(results['metrics'])}")


def retention_before(
    model: Any,
    tokenizer: Any,
    heldout: list[dict[str, Any]],
    cfg: DictConfig,
    identity: dict[str, Any],
    new_token_ids: list[int],
) -> dict[str, float] | None:
    """Retention yardsticks of the untuned model (new rows included: they take part in the softmax)."""
    if not cfg.retention.enabled:
        return None
    rows = model.get_input_embeddings().weight[new_token_ids].detach().float().numpy().tobytes()
    key_id = {**identity, "new_rows": hashlib.sha256(rows).hexdigest()[:16]}
    items = retention.load_items(cfg.retention)
    return retention.measure_before(
        model,
        tokenizer,
        heldout,
        items,
        cfg.retention,
        cfg.data.max_length,
        Path(cfg.paths.cache_dir),
        key_id,
    )


def build_callbacks(cfg: DictConfig, ckpt_dir: Path) -> list[Any]:
    """The configured callbacks; checkpoints go to ``ckpt_dir`` (a disperse_merge portion has its own)."""
    callbacks = [instantiate(conf) for conf in cfg.callbacks.values() if wanted_callback(conf, cfg)]
    for callback in callbacks:
        if isinstance(callback, ModelCheckpoint | PreemptionCheckpoint):
            callback.dirpath = type(callback.dirpath)(ckpt_dir) if callback.dirpath is not None else None
    return callbacks


def fit(
    cfg: DictConfig,
    peft_model: Any,
    tokenizer: Any,
    splits: dict[str, list[dict[str, Any]]],
    diverse: list[dict[str, Any]],
    loggers: list[Any],
    max_steps: int,
    ckpt_dir: Path,
    ckpt_path: str | None,
) -> tuple[L.Trainer, int | None]:
    """Steps 5-6: train on the downstream examples mixed with the diverse ones, as the schedule says.

    Returns the trainer and the step at which a preemption signal stopped it (None: it finished).
    """
    schedule = build_schedule(cfg.schedule)
    datamodule = DeliaDataModule(
        tokenizer,
        task_records=splits["train"],
        diverse_records=diverse,
        eval_records=splits.get("eval", []),
        schedule=schedule,
        max_steps=max_steps,
        batch_size=cfg.data.batch_size,
        accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
        max_length=cfg.data.max_length,
        on_overlength=cfg.data.on_overlength,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        packing=bool(cfg.data.packing),
        diverse_store_dir=Path(cfg.paths.cache_dir) if cfg.data.get("stream_diverse", True) else None,
    )
    module = DeliaModule(peft_model, schedule, instantiate(cfg.optimizer), instantiate(cfg.lr_scheduler))
    callbacks = build_callbacks(cfg, ckpt_dir)
    # checkpoints are safetensors files, never pickle (allow_pickle=true reads old pickle .ckpt files)
    plugins = [SafetensorsCheckpointIO(allow_pickle=bool(cfg.allow_pickle))]
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_steps=max_steps,
        val_check_interval=_val_interval(cfg, max_steps),
        logger=loggers or False,
        callbacks=callbacks,
        plugins=plugins,
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    preempted = [
        c.saved_at_step for c in callbacks if isinstance(c, PreemptionCheckpoint) and c.saved_at_step
    ]
    return trainer, (preempted[0] if preempted else None)


def _val_interval(cfg: DictConfig, max_steps: int) -> Any:
    """The configured validation interval, capped at the batches of a (shorter) disperse_merge portion."""
    interval = cfg.trainer.get("val_check_interval")
    batches = max_steps * int(cfg.trainer.accumulate_grad_batches)
    return min(interval, batches) if isinstance(interval, int) else interval


def disperse_then_merge(
    cfg: DictConfig,
    peft_model: Any,
    tokenizer: Any,
    splits: dict[str, list[dict[str, Any]]],
    loggers: list[Any],
    run_dir: Path,
) -> tuple[L.Trainer | None, int | None]:
    """Disperse-Then-Merge: one adapter per portion of the instruction data, then merged into one.

    Each portion trains its own adapter for its share of ``max_steps``; a finished portion's adapter is
    saved under ``<run dir>/portions/<j>/`` and reloaded when the run is resumed, so a killed run redoes
    at most the portion it was in (which resumes from that portion's own ``last.ckpt``).
    """
    k = int(cfg.baseline.portions)
    parts = baselines.portions(splits["train"], k, cfg.seed)
    names = ["default", *[f"portion{j}" for j in range(1, k)]]
    config = peft_model.peft_config["default"]
    trainer, seen = None, dict.fromkeys(SEEN_KEYS, 0)
    for j, (name, part, steps) in enumerate(
        zip(names, parts, baselines.portion_steps(int(cfg.trainer.max_steps), k), strict=True)
    ):
        if name not in peft_model.peft_config:
            peft_model.add_adapter(name, copy.deepcopy(config))
        peft_model.set_adapter(name)
        folder = run_dir / "portions" / str(j)
        if baselines.load_portion(peft_model, name, folder):
            log.info("disperse_merge: portion %d reloaded from %s", j, folder)
            continue
        for logger in loggers if j else []:
            if isinstance(logger, ResumableCSVLogger):
                logger.append_only()  # each portion counts its steps from 0 again: keep every row
        last = folder / "checkpoints" / "last.ckpt"
        resume = str(last) if cfg.resume and last.is_file() else None
        portion_splits = {**splits, "train": part}
        trainer, preempted = fit(
            cfg, peft_model, tokenizer, portion_splits, [], loggers, steps, last.parent, resume
        )
        if preempted is not None:
            return trainer, preempted
        for key in SEEN_KEYS:
            seen[key] += int(trainer.callback_metrics.get(key, 0))
        baselines.save_portion(peft_model, name, folder)
    baselines.merge_adapters(peft_model, names, cfg.baseline)
    if trainer is not None:  # the examples of every portion trained in this process
        trainer.callback_metrics.update({k: torch.tensor(float(v)) for k, v in seen.items()})
    return trainer, None
