"""The DELIA training recipe, from setup to cleanup, in the order of the paper's algorithm.

1. load the pretrained model (the embedded SmolLM2 by default);
2. build the downstream task (instructions anisotropically diversified for DELIA);
3. self-sample the diverse data from the same model (cached);
4. add the new special token and initialise its embedding row; wrap with LoRA;
5-6. train on the downstream examples mixed with the diverse examples (the schedule decides how);
7. save the adapter, evaluate, write ``metrics.json``.

The phases: :func:`prepare_data` (1-3), :func:`prepare_model` (4), :func:`fit` (5-6), :func:`finish` (7).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from omegaconf import DictConfig

from delia.baselines import own_training, prompted_task
from delia.callbacks import build_callbacks, preempted_at
from delia.callbacks.buffering import BufferingDiagnostics
from delia.config import refuse_finished_run, validate, validate_steps
from delia.console.summary import print_summary
from delia.data.datamodule import build_datamodule
from delia.data.mixing import diverse_count, diverse_ratio
from delia.data.tokenize import encode_all
from delia.dataset import loss_split, prior_description
from delia.dataset.wordings import Runtime, WordingReport, apply_wordings
from delia.diverse import self_sample
from delia.eval import retention
from delia.eval.evaluate import evaluate, run_representation
from delia.eval.representation import with_step0
from delia.infra.checkpoint_io import SafetensorsCheckpointIO
from delia.infra.files import file_lock, write_json
from delia.infra.launch import (
    checkpoint_to_resume,
    hydra_mode,
    is_launcher_rank,
    refuse_relaunch_in_multirun,
    setup_gpu_pool,
)
from delia.infra.precision import apply_precision
from delia.infra.security import save_config
from delia.infra.types import Record, Splits
from delia.loggers import build_loggers, finish_loggers, log_results
from delia.model import add_new_tokens, base_model_folder, load_base, model_identity, save_adapter, wrap_peft
from delia.model.packed_attention import use_packed_attention
from delia.model.peft import use_uniform_dropout
from delia.module import SEEN_KEYS, DeliaModule
from delia.protocol import RunLength, run_length
from delia.protocol import apply as apply_length
from delia.schedule import build_schedule

log = logging.getLogger(__name__)


@dataclass
class Data:
    """What the data phase hands on: the base model, the task's splits, the diverse and held-out samples."""

    model: Any
    tokenizer: Any
    splits: Splits
    diverse: list[dict[str, Any]]
    heldout: list[dict[str, Any]]
    identity: dict[str, Any]
    truncated_share: float  # of the diverse samples drawn, the share cut by max_new_tokens
    repr_step0: dict[str, float] = field(default_factory=dict)  # before training, set by prepare_model
    wordings: WordingReport | None = None  # the wording pool applied (conf/wordings/); None: the task's own


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run DELIA (or a baseline, by config) and return the metrics."""
    precision = apply_precision(cfg)  # trainer.precision=auto -> what this machine computes natively
    validate(cfg)
    refuse_relaunch_in_multirun(cfg, hydra_mode())
    setup_gpu_pool(cfg)
    log.info("training precision: %s (trainer.precision)", precision)
    length = resolve_length(cfg)
    run_dir = Path(cfg.paths.run_dir)
    finished = refuse_finished_run(run_dir, cfg.overwrite, cfg.resume)
    if finished is not None:
        log.info("%s already finished (metrics.json): resume=auto skips it", run_dir)
        return finished
    own = own_training(cfg)  # a baseline that keeps its own checkpoints (one per portion) resumes them itself
    ckpt_path = None if own is not None and own.own_checkpoints else checkpoint_to_resume(cfg, run_dir)
    if not is_launcher_rank():
        return fit_and_evaluate(cfg, run_dir, ckpt_path, length)
    with file_lock(run_dir / ".delia.lock", wait=False, what=f"run dir {run_dir}"):
        save_config(cfg, run_dir / "config.yaml")
        return fit_and_evaluate(cfg, run_dir, ckpt_path, length)


def resolve_length(cfg: DictConfig) -> RunLength:
    """The protocol's step count, written into ``trainer.max_steps`` and checked, before any model loads."""
    length = run_length(cfg, len(prompted_task(cfg)["train"]))
    apply_length(cfg, length)
    validate_steps(cfg, steps_fixed=length.task_epochs is None)
    log.info("protocol %s: %d steps (task epochs: %s)", length.protocol, length.steps, length.task_epochs)
    return length


def fit_and_evaluate(
    cfg: DictConfig, run_dir: Path, ckpt_path: str | None, length: RunLength
) -> dict[str, Any]:
    """Steps 1-7 of the algorithm (see the module docstring); the baseline decides how 5-6 train."""
    L.seed_everything(cfg.seed, workers=True)
    data = prepare_data(cfg)
    # re-seed: what follows (new-row init, LoRA init, dropout) must not depend on whether the
    # diverse data came from the cache or was sampled just now
    L.seed_everything(cfg.seed, workers=True)
    peft_model, new_tokens, before = prepare_model(cfg, data)
    loggers = build_loggers(cfg)
    trainer, preempted = train_by_baseline(cfg, peft_model, data, loggers, run_dir, ckpt_path, length)
    metrics: dict[str, Any] = {}
    if preempted is not None:
        print(
            f"\nDELIA run preempted at step {preempted}; continue it with: resume=true hydra.run.dir={run_dir}"
        )
    elif trainer is None or trainer.is_global_zero:
        save_adapter(peft_model, data.tokenizer, run_dir / "adapter", new_tokens, {"model": data.identity})
        metrics = finish(cfg, peft_model, data, before, trainer, loggers, run_dir, length)
    finish_loggers(loggers, run_dir)
    return metrics


def prepare_data(cfg: DictConfig) -> Data:
    """Steps 1-3: the base model, the downstream splits, the diverse samples and the held-out slice."""
    cache_dir = Path(cfg.paths.cache_dir)
    model, tokenizer = load_base(cfg.model, cache_dir)
    splits = prompted_task(cfg)
    # --- anisotropic diversification from a wording pool (conf/wordings/), once the model is loaded (it may
    # paraphrase); wordings=none leaves the splits as they are
    splits, wordings = apply_wordings(cfg, splits, Runtime(model, tokenizer, cfg.model, cache_dir))
    # ---
    # a bad downstream example (e.g. longer than data.max_length) names its file and line before any
    # sampling or measuring starts
    encode_all(tokenizer, splits["train"], cfg.data.max_length, cfg.data.on_overlength, "downstream data")
    identity = model_identity(cfg.model)
    ratio = diverse_ratio(cfg.diverse)
    n_diverse = diverse_count(len(splits["train"]), ratio)
    folder = base_model_folder(cfg.model, cache_dir)  # what an engine sampler (vllm) loads
    drawn: dict[str, int] = {}
    diverse = self_sample(model, tokenizer, cfg.diverse, n_diverse, cache_dir, identity, False, folder, drawn)
    log.info(
        "downstream examples: %d, diverse examples: %d (ratio %s)", len(splits["train"]), len(diverse), ratio
    )
    # the held-out diverse slice: retention's yardstick and the buffering diagnostics' diverse probe
    wanted = cfg.retention.enabled or "buffering" in cfg.callbacks
    heldout = heldout_slice(model, tokenizer, cfg.retention, cache_dir, identity) if wanted else []
    truncated = drawn.get("truncated", 0) / drawn["drawn"] if drawn.get("drawn") else 0.0
    return Data(model, tokenizer, splits, diverse, heldout, identity, truncated, wordings=wordings)


def heldout_slice(
    model: Any, tokenizer: Any, cfg: DictConfig, cache_dir: Path, model_id: dict[str, Any]
) -> list[Record]:
    """The held-out diverse answers (``retention.*``: sampled once per model into the diverse cache, from
    queries that training never samples)."""
    return self_sample(
        model, tokenizer, cfg.sampling, int(cfg.heldout_size), cache_dir, model_id, heldout=True
    )


def prepare_model(cfg: DictConfig, data: Data) -> tuple[Any, dict[str, int], dict[str, float] | None]:
    """Step 4: the new token and its row, retention of the untuned model, the LoRA wrapper."""
    description = prior_description(cfg.dataset)
    token = cfg.dataset.get("special_token")
    new_tokens = add_new_tokens(
        data.model, data.tokenizer, token, cfg.token_init.strategy, description, cfg.seed
    )
    ids = list(new_tokens.values())
    before = retention.before_tuning(data.model, data.tokenizer, data.heldout, cfg, data.identity, ids)
    peft_model = wrap_peft(data.model, cfg.peft, ids, cfg.baseline.train_new_tokens)
    data.repr_step0 = run_representation(peft_model, data.tokenizer, cfg, description)  # no randomness drawn
    peft_model.train()  # from_pretrained returns eval mode, which would switch LoRA dropout off
    return peft_model, new_tokens, before


def train_by_baseline(
    cfg: DictConfig,
    peft_model: Any,
    data: Data,
    loggers: list[Any],
    run_dir: Path,
    ckpt_path: str | None,
    length: RunLength,
) -> tuple[L.Trainer | None, int | None]:
    """Steps 5-6 as the baseline says: not at all (ctg, dipmt), by its own training (registered in
    :data:`delia.baselines.OWN_TRAINING`, handed the one-fit phase), or by the one fit."""
    if not cfg.baseline.train:
        return None, None
    one_fit = partial(fit, cfg, peft_model, data.tokenizer, loggers=loggers)
    own = own_training(cfg)
    if own is not None:
        return own.train(cfg, peft_model, data.splits, loggers, run_dir, one_fit, length)
    ckpt_dir = run_dir / "checkpoints"
    return one_fit(
        data.splits, length.steps, ckpt_dir, ckpt_path, length.task_epochs, data.diverse, heldout=data.heldout
    )


def training_kernels(cfg: DictConfig, peft_model: Any) -> None:
    """What the training step computes with besides the model's own layers: LoRA dropout from one uniform
    draw, and one attention per example of a packed row (both exact in distribution or up to rounding)."""
    use_uniform_dropout(peft_model)
    if cfg.data.packing and cfg.data.packed_attention:
        use_packed_attention(peft_model)


def fit(
    cfg: DictConfig,
    peft_model: Any,
    tokenizer: Any,
    splits: Splits,
    max_steps: int,
    ckpt_dir: Path,
    ckpt_path: str | None,
    task_epochs: int | None,
    diverse: list[Record],
    loggers: list[Any],
    heldout: list[Record] | None = None,
) -> tuple[L.Trainer, int | None]:
    """Steps 5-6: train on the downstream examples mixed with the diverse ones, as the schedule says.

    ``task_epochs``: the exposure protocol's passes over the task (None: ``max_steps`` fixed).
    Returns the trainer and the step at which a preemption signal stopped it (None: it finished).
    """
    schedule = build_schedule(cfg.schedule)
    eval_records = loss_split(splits)
    datamodule = build_datamodule(
        cfg, tokenizer, splits["train"], diverse, eval_records, schedule, max_steps, task_epochs
    )
    training_kernels(cfg, peft_model)
    module = DeliaModule(peft_model, schedule, instantiate(cfg.optimizer), instantiate(cfg.lr_scheduler))
    callbacks = build_callbacks(cfg, ckpt_dir)
    for callback in callbacks:
        if isinstance(callback, BufferingDiagnostics):  # probes that training never sees
            callback.probe(task_probe(splits), heldout or [], tokenizer, int(cfg.data.max_length))
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        max_steps=max_steps,
        val_check_interval=_val_interval(cfg, max_steps),
        logger=loggers or False,
        callbacks=callbacks,
        # checkpoints are safetensors files, never pickle (allow_pickle=true reads old pickle .ckpt files)
        plugins=[SafetensorsCheckpointIO(allow_pickle=bool(cfg.allow_pickle))],
    )
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    return trainer, preempted_at(callbacks)


def task_probe(splits: Splits) -> list[Record]:
    """The buffering diagnostics' task probe: the same examples for every method of a sweep, held-out
    facts with held-out wordings (``unseen_wordings``; a task without them: its eval split). Not the
    ``seen_wordings`` split, whose wordings are each method's own (one wording without diversification)."""
    return splits.get("unseen_wordings") or loss_split(splits)


def _val_interval(cfg: DictConfig, max_steps: int) -> Any:
    """The configured validation interval, capped at the batches of this fit (a portion may be shorter)."""
    interval = cfg.trainer.get("val_check_interval")
    batches = max_steps * int(cfg.trainer.accumulate_grad_batches)
    return min(interval, batches) if isinstance(interval, int) else interval


def finish(
    cfg: DictConfig,
    peft_model: Any,
    data: Data,
    before: dict[str, float] | None,
    trainer: L.Trainer | None,
    loggers: list[Any],
    run_dir: Path,
    length: RunLength,
) -> dict[str, Any]:
    """Step 7: evaluate, measure retention, write samples.json and metrics.json, log, print the table."""
    splits = data.splits
    results = evaluate(
        peft_model, data.tokenizer, splits, cfg, loss_split(splits), prior_description(cfg.dataset)
    )
    metrics = results["metrics"] = with_step0(results["metrics"], data.repr_step0)
    if before is not None:
        metrics.update(retention.after_tuning(peft_model, data.tokenizer, data.heldout, before, cfg))
    metrics.update(training_counts(trainer, len(data.splits["train"]), len(data.diverse)))
    metrics.update(protocol_metrics(cfg, length))
    metrics["train/diverse_truncated_share"] = data.truncated_share
    # --- the wording pool's measures (wordings/*), and the pool itself beside metrics.json
    if data.wordings is not None:
        metrics.update(data.wordings.metrics)
        write_json(run_dir / "wordings.json", data.wordings.as_json())
    # ---
    for callback in trainer.callbacks if trainer is not None else []:
        if isinstance(callback, BufferingDiagnostics):
            metrics.update(callback.summary())
    if cfg.baseline.train and metrics["train/downstream_examples"]:  # passes over the task each example got
        metrics["protocol/task_exposure"] = metrics[SEEN_KEYS[0]] / metrics["train/downstream_examples"]
    samples = results.pop("samples")
    write_json(run_dir / "samples.json", samples)
    metrics["train/bf16"] = float("bf16" in str(cfg.trainer.precision))  # 1: trained in bfloat16 (mixed)
    labels = {
        "baseline": cfg.baseline.name,
        "ablation": cfg.ablation.name,
        "precision": cfg.trainer.precision,
    }
    write_json(run_dir / "metrics.json", {**results, **labels})
    log_results(loggers, results, samples, trainer.global_step if trainer is not None else 0)
    print_summary(run_dir, metrics, loggers)
    return metrics


def protocol_metrics(cfg: DictConfig, length: RunLength) -> dict[str, Any]:
    """``protocol/*`` of the run: a baseline that trains nothing (ctg, dipmt) ran no step and no pass over
    the task, whatever the protocol would have given a trained method."""
    if cfg.baseline.train:
        return length.as_metrics()
    return {
        "protocol/name": length.protocol,
        "protocol/steps": 0,
        "protocol/global_batch": length.global_batch,
    }


def training_counts(trainer: L.Trainer | None, n_task: int, n_diverse: int) -> dict[str, int]:
    """The data sizes and the examples trained on per source (summed over ranks; 0 without training)."""
    counts = {"train/downstream_examples": n_task, "train/diverse_examples": n_diverse}
    seen = [0, 0] if trainer is None else [trainer.callback_metrics.get(key) for key in SEEN_KEYS]
    if None in seen:  # fit ran no step in this process: Lightning skipped on_train_start and on_train_end
        seen = counts_without_a_step(trainer)
    return counts | {key: int(value) for key, value in zip(SEEN_KEYS, seen, strict=True)}


def counts_without_a_step(trainer: L.Trainer) -> list[int]:
    """Examples per source of a resumed run whose checkpoint had already reached ``max_steps`` (killed
    between its last step and ``metrics.json``): the plan's up to that step, what an unbroken run counted.
    Over several ranks that would need a gather after the strategy's teardown: -1 there, logged."""
    if trainer.world_size > 1:
        log.warning(
            "train/seen_*_examples: fit resumed at max_steps on %d ranks: not counted (-1)",
            trainer.world_size,
        )
        return [-1, -1]
    module = trainer.lightning_module
    return module.trained_before().tolist() if isinstance(module, DeliaModule) else [-1, -1]
