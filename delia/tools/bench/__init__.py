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
   (:mod:`delia.tools.bench.sampling`); ``default_run/sample/<backend>`` the same on what ``delia-train``
   samples (one prompt per diverse answer of the config, answers of up to ``diverse.max_new_tokens``) by
   the backends of ``bench.default_workload_samplers``;
4. ``memory/ratio_<r>``: peak resident memory of a few training steps at diverse ratio r (1 and 100).

Useful tokens are the tokens of real examples (prompt and reply), never padding. Every recipe runs with
the same LoRA, batch size, sequence length, learning rate and precision. What bounds each number: the
machine's load during the run (the spreads say how much), the timed steps per round (``bench.steps``),
and for the MFU the FLOP count of :func:`step_flops`; and the machine, named in ``bench.json`` by its CPU's
name, family and model numbers and bfloat16 instructions. Writes ``bench.json`` and prints a table.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from delia.baselines import prompted_task
from delia.config import validate
from delia.data.mixing import diverse_count, diverse_ratio
from delia.infra.errors import DeliaError
from delia.infra.precision import cpu_computes_bfloat16
from delia.model import load_base
from delia.tools.bench.flops import example_lengths, matmul_params, matmul_peak, step_flops
from delia.tools.bench.memory import memory_by_ratio, memory_ratios, peak_rss_bytes
from delia.tools.bench.rounds import timed_rounds
from delia.tools.bench.sampling import time_sampling
from delia.tools.bench.training import CountingCollator, bench_data, mixed_workload

# bench.measure's choices; a sampling measure's figures are the bench.json keys that start with its name,
# and its rows in the table and its ratios are named with this prefix
SAMPLING_MEASURES = {"sampling": "", "sampling_default": "default_run/"}
MEASURES = ("train", *SAMPLING_MEASURES, "memory")

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
    if unknown := sorted(wanted - set(MEASURES)):
        raise DeliaError(f"bench.measure: unknown {', '.join(unknown)}: choose among {', '.join(MEASURES)}")
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
    for measure in SAMPLING_MEASURES:
        if measure in wanted:
            sampling = time_sampling(cfg if measure == "sampling" else default_run_workload(cfg))
            results.update({f"{measure}_{key}": value for key, value in sampling.items()})
            results["ratios"].update(sampling_ratios(sampling["tokens_per_s"], measure))
    if "memory" in wanted:
        results["peak_rss_bytes"] = memory_by_ratio(cfg)
        results["ratios"].update(memory_ratios(results["peak_rss_bytes"], list(cfg.bench.memory_ratios)))
    return results


def default_run_workload(cfg: DictConfig) -> DictConfig:
    """The sampling part on what ``delia-train`` samples: one prompt per diverse answer of this config,
    answers of up to ``diverse.max_new_tokens``, by the samplers of ``bench.default_workload_samplers``."""
    n_task = len(prompted_task(cfg)["train"])
    bench = {
        "sample_prompts": diverse_count(n_task, diverse_ratio(cfg.diverse)),
        "sample_max_new_tokens": int(cfg.diverse.max_new_tokens),
        "samplers": list(cfg.bench.default_workload_samplers),
    }
    if not bench["sample_prompts"]:
        raise DeliaError("bench.measure=[sampling_default]: this config samples no diverse answers (ratio 0)")
    return OmegaConf.merge(cfg, {"bench": bench})


def sampling_ratios(tokens_per_s: dict[str, float], measure: str = "sampling") -> dict[str, float]:
    """Each sampler backend's generated tokens/s over transformers' (higher is faster); the default run's
    workload's ratios are named ``default_run/...``."""
    base = tokens_per_s.get("sample/transformers")
    if not base:
        return {}
    lead = SAMPLING_MEASURES[measure]
    return {
        f"{lead}{name}_vs_transformers": value / base
        for name, value in tokens_per_s.items()
        if name != "sample/transformers"
    }


def cpu_fields(cpuinfo: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields of Linux's cpuinfo (empty where unreadable)."""
    fields: dict[str, str] = {}
    try:
        with open(cpuinfo) as lines:
            for line in lines:
                key, _, value = line.partition(":")
                if not key.strip():
                    break  # the blank line after the first processor
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return fields


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's marketing name (``model name`` in Linux's cpuinfo), or the architecture where unreadable."""
    return cpu_fields(cpuinfo).get("model name") or platform.processor() or platform.machine()


def cpu_generation(cpuinfo: str = "/proc/cpuinfo") -> dict[str, Any]:
    """What tells apart CPUs that share a marketing name ("AMD EPYC" is Zen 4 at family 25, Zen 5 at 26):
    the family and model numbers, and the bfloat16 instructions (AMX tiles, AVX512-BF16) the CPU has."""
    fields = cpu_fields(cpuinfo)
    flags = set(fields.get("flags", "").split())
    return {
        "cpu_family": fields.get("cpu family"),
        "cpu_model_number": fields.get("model"),
        "cpu_bfloat16_flags": sorted(flags & {"amx_bf16", "amx_tile", "avx512_bf16"}),
    }


def machine() -> dict[str, Any]:
    """What the figures were measured on: timings differ about 2x between the CPUs of one kind."""
    return {
        "cpu": cpu_model(),
        **cpu_generation(),
        "cpu_computes_bfloat16": cpu_computes_bfloat16(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def _range(cell: dict[str, Any], fmt: str = ".1f") -> str:
    return f"{cell['median']:{fmt}} [{cell['min']:{fmt}}, {cell['max']:{fmt}}]"


def _sampling_lines(results: dict[str, Any], measure: str) -> list[str]:
    """The table rows of one sampling measure: its workload, tok/s, skipped backends, the log-prob check."""
    if f"{measure}_workload" not in results:
        return []
    w, lead = results[f"{measure}_workload"], SAMPLING_MEASURES[measure]
    lines = [
        f"{lead + 'sample workload':<46}{w['prompts']:>6} prompts of {w['prompt_tokens_mean']:.0f} tokens "
        f"(max {w['prompt_tokens_max']}), replies up to {w['max_new_tokens']}"
    ]
    for name, value in results[f"{measure}_tokens_per_s"].items():
        mean_reply = results[f"{measure}_reply_tokens"].get(name.removeprefix("sample/"))
        reply = f"  (replies {mean_reply:.0f} tokens on average)" if mean_reply is not None else ""
        lines.append(f"{lead + name:<46}{value:10.1f} generated tok/s{reply}")
    for name, why in results[f"{measure}_skipped"].items():
        lines.append(f"{lead + 'sample/' + name:<46}{'skipped':>10} ({why})")
    for name, entry in results[f"{measure}_logprob"].items():
        diff = entry.get("minus_transformers")
        versus = (
            f"  {diff:+.3f} +- {entry['se_of_difference']:.3f} vs transformers" if diff is not None else ""
        )
        lines.append(
            f"{lead + 'logprob/' + name:<46}{entry['mean']:10.3f} +- {entry['se']:.3f} per token{versus}"
        )
    return lines


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
    for measure in SAMPLING_MEASURES:
        lines += _sampling_lines(results, measure)
    for name, value in results.get("peak_rss_bytes", {}).items():
        lines.append(f"memory/{name:<39}{value / 2**30:10.2f} GiB peak RSS")
    for name, value in results.get("ratios", {}).items():
        lines.append(f"{name:<46}{value:10.2f}x")
    return "\n".join(lines)
