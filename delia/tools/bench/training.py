"""Timed training steps: ours (packed and unpacked) and the peers (TRL as the release set it up, TRL with
packing, a plain transformers Trainer), on the same examples, in the precision asked.

Two workloads: ``task`` (delia-train's own data: the downstream split and the self-sampled diverse
answers; a user's file through ``dataset=jsonl``) and ``mixed`` (:func:`mixed_workload`: chat rows the
bench writes itself, replies of 20 to 320 words, so that padding and packing matter as on real data)."""

from __future__ import annotations

import logging
import random
import tempfile
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from delia.baselines import prompted_task
from delia.data.datamodule import build_datamodule, collate
from delia.data.mixing import diverse_count, diverse_ratio
from delia.data.tokenize import IGNORE_INDEX, encode_all
from delia.dataset import prior_description
from delia.diverse import self_sample
from delia.model import add_new_tokens, load_base, model_identity, wrap_peft
from delia.module import DeliaModule
from delia.recipe import training_kernels
from delia.schedule import build_schedule
from delia.tools.bench.flops import Timing, example_lengths, flop_counter

log = logging.getLogger(__name__)


@dataclass
class BenchData:
    task: list[dict[str, Any]]
    diverse: list[dict[str, Any]]


def bench_data(cfg: DictConfig, model: Any, tokenizer: Any) -> BenchData:
    """The downstream training split and the self-sampled diverse data (from the cache when there)."""

    task = prompted_task(cfg)["train"]
    n = diverse_count(len(task), diverse_ratio(cfg.diverse))
    identity = model_identity(cfg.model)
    diverse = self_sample(model, tokenizer, cfg.diverse, n, Path(cfg.paths.cache_dir), identity) if n else []
    return BenchData(task, diverse)


def fresh_model(cfg: DictConfig) -> tuple[Any, Any]:
    """The base model with the new token and a fresh LoRA, as delia-train builds it.

    The new token's row is not trained in any recipe here: TRL's fused LM head cannot run through peft's
    trainable-token wrapper, and one embedding row is no measurable work.
    """
    L.seed_everything(cfg.seed, workers=True)
    model, tokenizer = load_base(cfg.model, cfg.paths.cache_dir)
    new_tokens = add_new_tokens(
        model,
        tokenizer,
        cfg.dataset.get("special_token"),
        cfg.token_init.strategy,
        prior_description(cfg.dataset),
        cfg.seed,
    )
    peft_model = wrap_peft(model, cfg.peft, list(new_tokens.values()), train_new_tokens=False)
    peft_model.train()
    return peft_model, tokenizer


MIXED_WORDS = (
    "the model answers each question with a short explanation of the reason and an example that shows "
    "how the idea applies in practice while the reader follows every step of the argument to its end"
).split()


def mixed_workload(cfg: DictConfig) -> BenchData:
    """``bench.mixed_rows`` chat rows: a question from the built-in query set, a reply of 20 to 320 words
    (uniform, seeded) drawn from a fixed word list; all downstream, no diverse part (the peers see the
    same rows). Its sequences are cut at ``bench.mixed_max_length`` tokens by every recipe."""
    from delia.diverse import load_queries

    rng = random.Random(f"{cfg.seed}/mixed")
    queries = load_queries("builtin")
    rows = []
    for i in range(int(cfg.bench.mixed_rows)):
        words = [rng.choice(MIXED_WORDS) for _ in range(rng.randint(20, 320))]
        reply = " ".join(words).capitalize() + "."
        question = queries[i % len(queries)]["query"]
        rows.append(
            {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": reply}]}
        )
    return BenchData(rows, [])


def mixed_examples(data: BenchData, seed: int) -> list[dict[str, Any]]:
    """The release's data layout: downstream and diverse records concatenated and shuffled once."""
    records = list(data.task) + list(data.diverse)
    random.Random(seed).shuffle(records)
    return records


class StepTimer(L.Callback):
    """Times each training batch and counts its useful tokens and FLOPs (after ``warmup`` batches)."""

    def __init__(self, warmup: int, cost: Any) -> None:
        self.warmup = warmup
        self.cost = cost
        self.timing = Timing()
        self._start = 0.0
        self._lengths: list[int] = []
        self._labels = 0

    def on_train_batch_start(self, trainer: L.Trainer, module: Any, batch: Any, batch_idx: int) -> None:
        self._lengths = example_lengths(batch)
        self._labels = int((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, module: Any, outputs: Any, batch: Any, idx: int) -> None:
        elapsed = time.perf_counter() - self._start
        if idx >= self.warmup:
            self.timing.seconds.append(elapsed)
            self.timing.tokens.append(sum(self._lengths))
            self.timing.flops.append(self.cost(self._lengths, self._labels))


def time_ours(cfg: DictConfig, data: BenchData, packing: bool, precision: str = "32-true") -> Timing:
    model, tokenizer = fresh_model(cfg)
    steps = int(cfg.bench.warmup) + int(cfg.bench.steps)
    settings = {
        "data": {"on_overlength": "truncate", "packing": packing},
        "trainer": {"accumulate_grad_batches": 1},
    }
    schedule = build_schedule(cfg.schedule)
    datamodule = build_datamodule(
        OmegaConf.merge(cfg, settings), tokenizer, data.task, data.diverse, [], schedule, steps
    )
    training_kernels(OmegaConf.merge(cfg, {"data": {"packing": packing}}), model)
    module = DeliaModule(model, schedule, instantiate(cfg.optimizer), instantiate(cfg.lr_scheduler))
    timer = StepTimer(int(cfg.bench.warmup), flop_counter(model, cfg))
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        max_steps=steps,
        precision=precision,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        gradient_clip_val=cfg.trainer.gradient_clip_val,
        callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.timing


class CountingCollator:
    """Wraps a collator and records the useful tokens of every batch it builds (its inputs' lengths)."""

    def __init__(self, inner: Any, drop: tuple[str, ...] = ()) -> None:
        self.inner = inner
        self.drop = drop
        self.tokens: list[int] = []

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        self.tokens.append(sum(len(e["input_ids"]) for e in examples))
        batch = self.inner(examples)
        return {k: v for k, v in batch.items() if k not in self.drop}


def step_timer_callback(timing: Timing, counter: CountingCollator, warmup: int) -> Any:
    from transformers import TrainerCallback

    class HFStepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.start = 0.0
            self.step = 0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            if self.step >= warmup:
                timing.seconds.append(time.perf_counter() - self.start)
                timing.tokens.append(counter.tokens[self.step])
            self.step += 1

    return HFStepTimer()


def training_arguments(cfg: DictConfig, output_dir: str, precision: str, **extra: Any) -> dict[str, Any]:
    """The settings every peer shares with delia-train, in the same precision as ours (``bf16-mixed``:
    transformers' ``bf16`` autocast; ``32-true``: float32)."""
    return {
        "output_dir": output_dir,
        "per_device_train_batch_size": int(cfg.data.batch_size),
        "gradient_accumulation_steps": 1,
        "max_steps": int(cfg.bench.warmup) + int(cfg.bench.steps),
        "learning_rate": float(cfg.optimizer.lr),
        "weight_decay": float(cfg.optimizer.weight_decay),
        "lr_scheduler_type": "constant_with_warmup",
        "warmup_steps": 0,
        "max_grad_norm": float(cfg.trainer.gradient_clip_val or 0.0),
        "bf16": precision.startswith("bf16"),
        "fp16": False,
        "activation_checkpointing": bool(cfg.model.get("gradient_checkpointing", False)),
        "logging_steps": 10_000,
        "save_strategy": "no",
        "report_to": [],
        "dataloader_num_workers": 0,
        "seed": int(cfg.seed),
        "disable_tqdm": True,
        "use_cpu": not torch.cuda.is_available(),
        **extra,
    }


def time_trl(cfg: DictConfig, data: BenchData, packing: bool, precision: str = "32-true") -> Timing:
    """TRL SFTTrainer: the release's concatenated, shuffled prompt/completion mix (loss on the completion)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = fresh_model(cfg)
    rows = [
        {"prompt": r["messages"][:-1], "completion": r["messages"][-1:]}
        for r in mixed_examples(data, cfg.seed)
    ]
    timing = Timing()
    with tempfile.TemporaryDirectory() as tmp:
        extra = (
            {"packing": True, "packing_strategy": "bfd"}
            if packing
            else {"packing": False, "padding_free": False}
        )
        args = SFTConfig(
            **training_arguments(cfg, tmp, precision),
            max_length=int(cfg.data.max_length),
            completion_only_loss=True,
            dataset_num_proc=None,
            **extra,
        )
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
        )
        counter = CountingCollator(trainer.data_collator)
        trainer.data_collator = counter
        trainer.add_callback(step_timer_callback(timing, counter, int(cfg.bench.warmup)))
        trainer.train()
    return timing


def time_hf_trainer(cfg: DictConfig, data: BenchData, precision: str = "32-true") -> Timing:
    """A plain transformers Trainer on our tokenized, shuffled mix, padded per batch (model's own loss)."""

    from transformers import Trainer, TrainingArguments

    model, tokenizer = fresh_model(cfg)
    examples = encode_all(
        tokenizer, mixed_examples(data, cfg.seed), int(cfg.data.max_length), "truncate", "bench"
    )
    counter = CountingCollator(partial(collate, pad_id=tokenizer.pad_token_id), drop=("source",))
    timing = Timing()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(**training_arguments(cfg, tmp, precision), remove_unused_columns=False)
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=counter)
        trainer.add_callback(step_timer_callback(timing, counter, int(cfg.bench.warmup)))
        trainer.train()
    return timing


# bench.recipes -> how each is timed (same examples, LoRA, batch, length, learning rate and precision)
RECIPES: dict[str, Any] = {
    "ours": partial(time_ours, packing=True),
    "ours_unpacked": partial(time_ours, packing=False),
    "trl_release": partial(time_trl, packing=False),
    "trl_packing": partial(time_trl, packing=True),
    "hf_trainer": time_hf_trainer,
}


def time_recipe(name: str, cfg: DictConfig, data: BenchData, precision: str) -> Timing:
    return RECIPES[name](cfg, data, precision=precision)
