"""``delia-bench``: delia-train's throughput and memory measured side by side with the peer recipes.

One run, one model, one data set, one machine, one process (memory in child processes):

1. ``train/ours`` (packing on) and ``train/ours_unpacked``: useful tokens/s of delia-train's training step
   (the Lightning ``DeliaModule`` on ``DeliaDataModule`` batches);
2. the peers on the same examples: ``train/trl_release`` (TRL ``SFTTrainer`` as the authors' release set it
   up: downstream + diverse concatenated and shuffled once, prompt/completion, padding per batch),
   ``train/trl_packing`` (the same with TRL's packing on) and ``train/hf_trainer`` (a plain transformers
   ``Trainer`` on our tokenized examples, padding per batch);
3. ``mfu``: achieved FLOP/s of our step over the peak FLOP/s of a plain float32 matmul measured here;
4. ``sample/ours`` (delia-sample's batched, length-sorted sampling) against ``sample/one_by_one``
   (one prompt per ``generate`` call): generated tokens/s;
5. ``memory/ratio_<r>``: peak resident memory of a few training steps at diverse ratio r (1 and 100).

Useful tokens are the tokens of real examples (prompt and reply), never padding. Every recipe runs in
float32 with the same LoRA, batch size, sequence length and learning rate. Absolute numbers vary
between runs on a shared machine; compare the ratios. Writes ``bench.json`` and prints a table.
"""

from __future__ import annotations

import itertools
import logging
import multiprocessing as mp
import random
import resource
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from delia.cli import CONF_DIR, checked_argv, run_reporting_errors
from delia.config import validate
from delia.data.datamodule import DeliaDataModule, collate
from delia.data.mixing import diverse_count, diverse_ratio
from delia.data.packing import NO_SOURCE
from delia.data.tokenize import IGNORE_INDEX, encode_all, render
from delia.evaluate import write_json
from delia.models import load_base, wrap_peft
from delia.module import DeliaModule
from delia.recipe import add_new_tokens, build_task, model_identity
from delia.sampling import generate_batch, load_queries, sampling_prompt
from delia.schedule import build_schedule

log = logging.getLogger(__name__)


@dataclass
class Timing:
    """Seconds and useful tokens of each timed step (warmup steps dropped)."""

    seconds: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    flops: list[float] = field(default_factory=list)

    def tokens_per_s(self) -> float:
        return sum(self.tokens) / sum(self.seconds) if self.seconds else float("nan")

    def flops_per_s(self) -> float:
        return sum(self.flops) / sum(self.seconds) if self.seconds and self.flops else float("nan")


# ---------------------------------------------------------------------------------------------
# what a step costs: useful tokens and model FLOPs
# ---------------------------------------------------------------------------------------------


def example_lengths(batch: dict[str, torch.Tensor]) -> list[int]:
    """The token count of every real example in a collated batch (packed or padded)."""
    if "token_source" not in batch:
        return [int(n) for n in batch["attention_mask"].sum(dim=1)]
    lengths = []
    for positions, source in zip(batch["position_ids"], batch["token_source"], strict=True):
        real = positions[source != NO_SOURCE]
        starts = [*(real == 0).nonzero().flatten().tolist(), len(real)]
        lengths += [b - a for a, b in itertools.pairwise(starts)]
    return lengths


def matmul_params(model: Any) -> int:
    """Weights that take part in matmuls (every Linear, lm_head included; embedding lookups are not)."""
    return sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))


def step_flops(
    lengths: list[int],
    params: int,
    layers: int,
    width: int,
    recompute: bool,
    head_params: int = 0,
    head_tokens: int = 0,
) -> float:
    """FLOPs of one LoRA training step on examples of these lengths.

    Forward 2·P per token, backward 2·P per token for the input gradients (the frozen base computes no
    weight gradients; LoRA's are negligible); causal attention 2·n²·d per layer forward and twice that
    backward. Gradient checkpointing recomputes the forward once more. ``head_params`` of ``params``
    (the vocabulary projection) run only at the ``head_tokens`` label positions, as delia-train does.
    """
    passes = 3 if recompute else 2
    body = params - head_params
    dense = sum(2 * body * n for n in lengths) * passes + 4 * head_params * head_tokens
    attention = sum(2 * n * n * width * layers for n in lengths) * (passes + 1)
    return float(dense + attention)


def matmul_peak(size: int, repeats: int = 5) -> float:
    """Peak FLOP/s of a plain float32 square matmul on this machine, now (best of ``repeats``)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


# ---------------------------------------------------------------------------------------------
# shared setup
# ---------------------------------------------------------------------------------------------


@dataclass
class BenchData:
    task: list[dict[str, Any]]
    diverse: list[dict[str, Any]]


def bench_data(cfg: DictConfig, model: Any, tokenizer: Any) -> BenchData:
    """The downstream training split and the self-sampled diverse data (from the cache when there)."""
    from delia.sampling import self_sample

    task = build_task(cfg)["train"]
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
    new_tokens = add_new_tokens(model, tokenizer, cfg)
    peft_model = wrap_peft(model, cfg.peft, list(new_tokens.values()), train_new_tokens=False)
    peft_model.train()
    return peft_model, tokenizer


def mixed_examples(data: BenchData, seed: int) -> list[dict[str, Any]]:
    """The release's data layout: downstream and diverse records concatenated and shuffled once."""
    records = list(data.task) + list(data.diverse)
    random.Random(seed).shuffle(records)
    return records


# ---------------------------------------------------------------------------------------------
# 1. our training step
# ---------------------------------------------------------------------------------------------


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


def time_ours(cfg: DictConfig, data: BenchData, packing: bool) -> Timing:
    model, tokenizer = fresh_model(cfg)
    steps = int(cfg.bench.warmup) + int(cfg.bench.steps)
    datamodule = DeliaDataModule(
        tokenizer,
        task_records=data.task,
        diverse_records=data.diverse,
        eval_records=[],
        schedule=build_schedule(cfg.schedule),
        max_steps=steps,
        batch_size=int(cfg.data.batch_size),
        max_length=int(cfg.data.max_length),
        on_overlength="truncate",
        seed=cfg.seed,
        packing=packing,
        diverse_store_dir=Path(cfg.paths.cache_dir) if cfg.data.get("stream_diverse", True) else None,
    )
    module = DeliaModule(
        model, build_schedule(cfg.schedule), instantiate(cfg.optimizer), instantiate(cfg.lr_scheduler)
    )
    timer = StepTimer(int(cfg.bench.warmup), flop_counter(model, cfg))
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator,
        devices=1,
        max_steps=steps,
        precision=cfg.trainer.precision,
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


def flop_counter(model: Any, cfg: DictConfig) -> Any:
    """``cost(lengths, label_tokens) -> FLOPs`` of our step for this model."""
    base = model.get_base_model()
    config = base.config
    params = matmul_params(base)
    head = base.get_output_embeddings().weight.numel()
    width = config.num_attention_heads * getattr(
        config, "head_dim", config.hidden_size // config.num_attention_heads
    )
    recompute = bool(cfg.model.get("gradient_checkpointing", False))
    return lambda lengths, labels: step_flops(
        lengths, params, config.num_hidden_layers, width, recompute, head_params=head, head_tokens=labels
    )


# ---------------------------------------------------------------------------------------------
# 2. the peers: TRL as the release set it up, TRL with packing, a plain transformers Trainer
# ---------------------------------------------------------------------------------------------


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


def training_arguments(cfg: DictConfig, output_dir: str, **extra: Any) -> dict[str, Any]:
    """The settings every peer shares with delia-train (float32: bf16 is emulated on this CPU)."""
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
        "bf16": False,
        "fp16": False,
        "gradient_checkpointing": bool(cfg.model.get("gradient_checkpointing", False)),
        "logging_steps": 10_000,
        "save_strategy": "no",
        "report_to": [],
        "dataloader_num_workers": 0,
        "seed": int(cfg.seed),
        "disable_tqdm": True,
        "use_cpu": not torch.cuda.is_available(),
        **extra,
    }


def time_trl(cfg: DictConfig, data: BenchData, packing: bool) -> Timing:
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
            **training_arguments(cfg, tmp),
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


def time_hf_trainer(cfg: DictConfig, data: BenchData) -> Timing:
    """A plain transformers Trainer on our tokenized, shuffled mix, padded per batch (model's own loss)."""
    from functools import partial

    from transformers import Trainer, TrainingArguments

    model, tokenizer = fresh_model(cfg)
    examples = encode_all(
        tokenizer, mixed_examples(data, cfg.seed), int(cfg.data.max_length), "truncate", "bench"
    )
    counter = CountingCollator(partial(collate, pad_id=tokenizer.pad_token_id), drop=("source",))
    timing = Timing()
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(**training_arguments(cfg, tmp), remove_unused_columns=False)
        trainer = Trainer(model=model, args=args, train_dataset=examples, data_collator=counter)
        trainer.add_callback(step_timer_callback(timing, counter, int(cfg.bench.warmup)))
        trainer.train()
    return timing


# ---------------------------------------------------------------------------------------------
# 4. sampling
# ---------------------------------------------------------------------------------------------


def time_sampling(cfg: DictConfig) -> dict[str, float]:
    """Generated tokens/s: delia-sample's batches of length-sorted prompts vs one prompt per call."""
    model, tokenizer = load_base(cfg.model, cfg.paths.cache_dir)
    model.eval()
    queries = load_queries(cfg.diverse.queries)[: int(cfg.bench.sample_prompts)]
    prompts = [render(tokenizer, sampling_prompt(q, cfg.diverse.use_reference), True) for q in queries]
    sample_cfg = OmegaConf.merge(cfg.diverse, {"max_new_tokens": int(cfg.bench.sample_max_new_tokens)})
    by_length = sorted(prompts, key=len)
    size = int(cfg.diverse.batch_size)

    def run(chunks: list[list[str]]) -> float:
        start, tokens = time.perf_counter(), 0
        for j, chunk in enumerate(chunks):
            replies = generate_batch(model, tokenizer, chunk, sample_cfg, seed=j)
            tokens += sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) + 1 for r in replies)
        return tokens / (time.perf_counter() - start)

    run([by_length[:2]])  # warm up
    ours = run([by_length[i : i + size] for i in range(0, len(by_length), size)])
    one_by_one = run([[p] for p in prompts])
    return {"sample/ours": ours, "sample/one_by_one": one_by_one}


# ---------------------------------------------------------------------------------------------
# 5. memory at diverse ratio 1x and 100x
# ---------------------------------------------------------------------------------------------


def _memory_child(cfg_yaml: str, ratio: int, queue: Any) -> None:
    cfg = OmegaConf.create(cfg_yaml)
    model, tokenizer = load_base(cfg.model, cfg.paths.cache_dir)
    data = bench_data(cfg, model, tokenizer)
    del model
    # ratio x downstream diverse examples: the sampled ones repeated (the memory a store needs does not
    # depend on what the answers say)
    want = diverse_count(len(data.task), ratio)
    diverse = [data.diverse[i % len(data.diverse)] for i in range(want)] if data.diverse else []
    steps = OmegaConf.merge(cfg, {"bench": {"warmup": 0, "steps": int(cfg.bench.memory_steps)}})
    time_ours(steps, BenchData(data.task, diverse), packing=bool(cfg.data.packing))
    queue.put(peak_rss_bytes())


def peak_rss_bytes() -> float:
    """This process's peak resident memory.

    Linux: ``VmHWM`` of /proc/self/status, the peak of this process image. ``ru_maxrss`` would not do
    for a child: it keeps the parent's high-water mark from the fork across the exec of a spawn.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) * 1024
    return float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)


def peak_memory(cfg: DictConfig, ratio: int) -> float:
    """Peak RSS (bytes) of a child process that trains ``bench.memory_steps`` steps at this ratio."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_memory_child, args=(OmegaConf.to_yaml(cfg, resolve=True), ratio, queue))
    child.start()
    child.join()
    if child.exitcode != 0:
        raise RuntimeError(f"the memory run at ratio {ratio} failed (exit code {child.exitcode})")
    return float(queue.get(timeout=5))


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------


def memory_by_ratio(cfg: DictConfig) -> dict[str, float]:
    """Peak RSS at each ratio of ``bench.memory_ratios`` (and the highest without the store)."""
    memory = {f"ratio_{r}": peak_memory(cfg, int(r)) for r in cfg.bench.memory_ratios}
    if cfg.bench.memory_without_store:  # the highest ratio again, diverse data tokenized in memory
        highest = int(cfg.bench.memory_ratios[-1])
        in_memory = OmegaConf.merge(cfg, {"data": {"stream_diverse": False}})
        memory[f"ratio_{highest}_in_memory"] = peak_memory(in_memory, highest)
    return memory


def memory_ratios(memory: dict[str, float], ratios_measured: list[int]) -> dict[str, float]:
    low, high = (memory[f"ratio_{r}"] for r in (ratios_measured[0], ratios_measured[-1]))
    out = {"memory/high_vs_low_ratio": high / low}
    if f"ratio_{ratios_measured[-1]}_in_memory" in memory:
        out["memory/in_memory_vs_store_at_high_ratio"] = (
            memory[f"ratio_{ratios_measured[-1]}_in_memory"] / high
        )
    return out


def run_bench(cfg: DictConfig) -> dict[str, Any]:
    """Every measurement of the module docstring, in one process; returns what bench.json holds."""
    validate(cfg)
    model, tokenizer = load_base(cfg.model, cfg.paths.cache_dir)
    data = bench_data(cfg, model, tokenizer)
    del model
    wanted = set(cfg.bench.measure)
    train: dict[str, Timing] = {}
    if "train" in wanted:
        train["ours"] = time_ours(cfg, data, packing=True)
        train["ours_unpacked"] = time_ours(cfg, data, packing=False)
    peak = matmul_peak(int(cfg.bench.matmul_size)) if "mfu" in wanted else float("nan")
    if "peers" in wanted:
        train["trl_release"] = time_trl(cfg, data, packing=False)
        train["trl_packing"] = time_trl(cfg, data, packing=True)
        train["hf_trainer"] = time_hf_trainer(cfg, data)
    results: dict[str, Any] = {
        "machine": machine(),
        "model": cfg.model.name,
        "settings": {
            "batch_size": int(cfg.data.batch_size),
            "max_length": int(cfg.data.max_length),
            "timed_steps": int(cfg.bench.steps),
            "warmup_steps": int(cfg.bench.warmup),
            "downstream_examples": len(data.task),
            "diverse_examples": len(data.diverse),
        },
        "train_tokens_per_s": {name: t.tokens_per_s() for name, t in train.items()},
        "train_raw": {name: asdict(t) for name, t in train.items()},
    }
    results["ratios"] = ratios(results["train_tokens_per_s"])
    if "ours" in train and "mfu" in wanted:
        results["mfu"] = {
            "achieved_flops_per_s": train["ours"].flops_per_s(),
            "matmul_peak_flops_per_s": peak,
            "mfu": train["ours"].flops_per_s() / peak,
        }
    if "sampling" in wanted:
        sampling = time_sampling(cfg)
        results["sampling_tokens_per_s"] = sampling
        results["ratios"]["sample/ours_vs_one_by_one"] = (
            sampling["sample/ours"] / sampling["sample/one_by_one"]
        )
    if "memory" in wanted:
        results["peak_rss_bytes"] = memory_by_ratio(cfg)
        results["ratios"].update(memory_ratios(results["peak_rss_bytes"], list(cfg.bench.memory_ratios)))
    return results


def ratios(tokens_per_s: dict[str, float]) -> dict[str, float]:
    """Our useful tokens/s over each peer's (higher is better for us)."""
    ours = tokens_per_s.get("ours")
    if ours is None:
        return {}
    return {
        f"train/ours_vs_{name}": ours / value
        for name, value in tokens_per_s.items()
        if name != "ours" and value
    }


def machine() -> dict[str, Any]:
    import os
    import platform

    return {
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def table(results: dict[str, Any]) -> str:
    lines = ["measurement                         value"]
    for name, value in results["train_tokens_per_s"].items():
        lines.append(f"train/{name:<30} {value:10.1f} useful tok/s")
    for name, value in results.get("sampling_tokens_per_s", {}).items():
        lines.append(f"{name:<36}{value:10.1f} generated tok/s")
    if "mfu" in results:
        lines.append(f"{'mfu (ours / matmul peak)':<36}{results['mfu']['mfu']:10.3f}")
    for name, value in results.get("peak_rss_bytes", {}).items():
        lines.append(f"memory/{name:<29}{value / 2**30:10.2f} GiB peak RSS")
    for name, value in results["ratios"].items():
        lines.append(f"{name:<36}{value:10.2f}x")
    return "\n".join(lines)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="bench")
def _main(cfg: DictConfig) -> None:
    results = run_reporting_errors(run_bench, cfg)
    out = Path(cfg.bench.output)
    write_json(out, results)
    print(f"{table(results)}\n\ndelia-bench: wrote {out}")


main = checked_argv(_main)

if __name__ == "__main__":
    main()
