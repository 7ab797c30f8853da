"""``delia-bench``: delia-train's throughput and memory measured side by side with the peer recipes.

One run, one model, one machine, one process (memory in child processes):

1. ``train``: useful tokens/s of each recipe of ``bench.recipes`` on each workload of ``bench.workloads``
   in each precision of ``bench.precisions``, timed in ``bench.rounds`` rounds with the recipes alternated
   (:mod:`delia.tools.bench.rounds`): ``ours`` (delia-train's step, packing on) and ``ours_unpacked``; the
   peers on the same examples: ``trl_release`` (TRL ``SFTTrainer`` as the authors' release set it up:
   downstream + diverse concatenated and shuffled once, prompt/completion, padding per batch),
   ``trl_packing`` (TRL's packing on) and ``hf_trainer`` (a plain transformers ``Trainer`` on our
   tokenized examples, padding per batch). Workloads: ``task`` (delia-train's data) and ``mixed`` (chat
   rows of 20 to 320 words the bench writes). Every figure is a median over the rounds with its spread,
   every ratio computed per round; a ratio whose spread crosses 1 is "not a ranking";
2. ``mfu``: our achieved FLOP/s over the peak FLOP/s of a plain matmul in the same precision, measured here;
3. ``sample/<backend>``: generated tokens/s of each sampler backend of ``bench.samplers`` on the same
   prompts, and the mean log-probability of its replies under the float32 transformers model
   (:mod:`delia.tools.bench.sampling`);
4. ``memory/ratio_<r>``: peak resident memory of a few training steps at diverse ratio r (1 and 100).

Useful tokens are the tokens of real examples (prompt and reply), never padding. Every recipe runs with
the same LoRA, batch size, sequence length, learning rate and precision. What bounds each number: the
machine's load during the run (the spreads say how much), the timed steps per round (``bench.steps``),
and for the MFU the FLOP count of :func:`step_flops`. Writes ``bench.json`` and prints a table.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch
from omegaconf import DictConfig

from delia.config import validate
from delia.infra.precision import cpu_computes_bfloat16
from delia.model import load_base
from delia.tools.bench.flops import example_lengths, matmul_params, matmul_peak, step_flops
from delia.tools.bench.memory import memory_by_ratio, memory_ratios, peak_rss_bytes
from delia.tools.bench.rounds import timed_rounds
from delia.tools.bench.sampling import time_sampling
from delia.tools.bench.training import CountingCollator, bench_data, mixed_workload

__all__ = [
    "CountingCollator",
    "cpu_model",
    "example_lengths",
    "machine",
    "matmul_params",
    "matmul_peak",
    "peak_rss_bytes",
    "run_bench",
    "step_flops",
    "table",
]


def run_bench(cfg: DictConfig) -> dict[str, Any]:
    """Every measurement of the module docstring, in one process; returns what bench.json holds."""
    validate(cfg)
    wanted = set(cfg.bench.measure)
    results: dict[str, Any] = {"machine": machine(), "model": cfg.model.name, "ratios": {}}
    if "train" in wanted:
        model, tokenizer = load_base(cfg.model, cfg.paths.cache_dir)
        workloads = {"task": bench_data(cfg, model, tokenizer), "mixed": mixed_workload(cfg)}
        del model
        workloads = {name: workloads[name] for name in cfg.bench.workloads}
        results["settings"] = {
            "batch_size": int(cfg.data.batch_size),
            "max_length": {name: int(cfg.data.max_length) for name in workloads},
            "timed_steps_per_round": int(cfg.bench.steps),
            "warmup_steps_per_round": int(cfg.bench.warmup),
            "rounds": int(cfg.bench.rounds),
            "examples": {name: len(data.task) + len(data.diverse) for name, data in workloads.items()},
        }
        if "mixed" in workloads:
            results["settings"]["max_length"]["mixed"] = int(cfg.bench.mixed_max_length)
        results.update(timed_rounds(cfg, workloads))
    if "sampling" in wanted:
        sampling = time_sampling(cfg)
        results["sampling_tokens_per_s"] = sampling["tokens_per_s"]
        results["sampling_logprob"] = sampling["logprob"]
        results["sampling_stopped"] = sampling["stopped"]
        results["sampling_reply_tokens"] = sampling["reply_tokens"]
        results["sampling_workload"] = sampling["workload"]
        results["sampling_skipped"] = sampling["skipped"]
        results["ratios"].update(sampling_ratios(sampling["tokens_per_s"]))
    if "memory" in wanted:
        results["peak_rss_bytes"] = memory_by_ratio(cfg)
        results["ratios"].update(memory_ratios(results["peak_rss_bytes"], list(cfg.bench.memory_ratios)))
    return results


def sampling_ratios(tokens_per_s: dict[str, float]) -> dict[str, float]:
    """Each sampler backend's generated tokens/s over transformers' (higher is faster)."""
    base = tokens_per_s.get("sample/transformers")
    if not base:
        return {}
    return {
        f"{name}_vs_transformers": value / base
        for name, value in tokens_per_s.items()
        if name != "sample/transformers"
    }


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's marketing name (``model name`` in Linux's cpuinfo), or the architecture where unreadable."""
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if key.strip() == "model name" and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """What the figures were measured on: timings differ about 2x between the CPUs of one kind."""
    return {
        "cpu": cpu_model(),
        "cpu_computes_bfloat16": cpu_computes_bfloat16(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _range(cell: dict[str, Any], fmt: str = ".1f") -> str:
    return f"{cell['median']:{fmt}} [{cell['min']:{fmt}}, {cell['max']:{fmt}}]"


def table(results: dict[str, Any]) -> str:
    """The bench as text: medians with [min, max] over the rounds, the ratios with their ranking."""
    lines = ["measurement                                   median [min, max] over rounds"]
    for workload, by_precision in results.get("train", {}).items():
        for precision, by_recipe in by_precision.items():
            for recipe, cell in by_recipe.items():
                lines.append(f"train/{workload}/{precision}/{recipe:<16}{_range(cell):>28} useful tok/s")
    for name, ratio in results.get("train_ratios", {}).items():
        lines.append(f"train/{name:<40}{_range(ratio, '.2f'):>22}x  {ratio['ranking']}")
    for name, cell in results.get("mfu", {}).items():
        peak = cell["matmul_peak_flops_per_s"] / 1e9
        lines.append(f"mfu/{name:<42}{_range(cell, '.3f'):>22}  (peak {peak:.0f} GFLOP/s, {cell['dtype']})")
    if "sampling_workload" in results:
        w = results["sampling_workload"]
        lines.append(
            f"{'sample workload':<46}{w['prompts']:>6} prompts of {w['prompt_tokens_mean']:.0f} tokens "
            f"(max {w['prompt_tokens_max']}), replies up to {w['max_new_tokens']}"
        )
    for name, value in results.get("sampling_tokens_per_s", {}).items():
        mean_reply = results.get("sampling_reply_tokens", {}).get(name.removeprefix("sample/"))
        reply = f"  (replies {mean_reply:.0f} tokens on average)" if mean_reply is not None else ""
        lines.append(f"{name:<46}{value:10.1f} generated tok/s{reply}")
    for name, why in results.get("sampling_skipped", {}).items():
        lines.append(f"{'sample/' + name:<46}{'skipped':>10} ({why})")
    for name, entry in results.get("sampling_logprob", {}).items():
        diff = entry.get("minus_transformers")
        versus = (
            f"  {diff:+.3f} +- {entry['se_of_difference']:.3f} vs transformers" if diff is not None else ""
        )
        lines.append(f"{'logprob/' + name:<46}{entry['mean']:10.3f} +- {entry['se']:.3f} per token{versus}")
    for name, value in results.get("peak_rss_bytes", {}).items():
        lines.append(f"memory/{name:<39}{value / 2**30:10.2f} GiB peak RSS")
    for name, value in results.get("ratios", {}).items():
        lines.append(f"{name:<46}{value:10.2f}x")
    return "\n".join(lines)
