"""``delia-bench``: delia-train's throughput and memory measured side by side with the peer recipes.

One run, one model, one data set, one machine, one process (memory in child processes):

1. ``train/ours`` (packing on) and ``train/ours_unpacked``: useful tokens/s of delia-train's training step
   (the Lightning ``DeliaModule`` on ``DeliaDataModule`` batches);
2. the peers on the same examples: ``train/trl_release`` (TRL ``SFTTrainer`` as the authors' release set it
   up: downstream + diverse concatenated and shuffled once, prompt/completion, padding per batch),
   ``train/trl_packing`` (the same with TRL's packing on) and ``train/hf_trainer`` (a plain transformers
   ``Trainer`` on our tokenized examples, padding per batch);
3. ``mfu``: achieved FLOP/s of our step over the peak FLOP/s of a plain float32 matmul measured here;
4. ``sample/<backend>``: generated tokens/s of each sampler backend of ``bench.samplers`` on the same
   prompts, and the mean log-probability of its replies under the float32 transformers model
   (:mod:`delia.tools.bench.sampling`);
5. ``memory/ratio_<r>``: peak resident memory of a few training steps at diverse ratio r (1 and 100).

Useful tokens are the tokens of real examples (prompt and reply), never padding. Every recipe runs in
float32 with the same LoRA, batch size, sequence length and learning rate. Absolute numbers vary
between runs on a shared machine; compare the ratios. Writes ``bench.json`` and prints a table.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict
from typing import Any

import torch
from omegaconf import DictConfig

from delia.config import validate
from delia.model import load_base
from delia.tools.bench.flops import Timing, example_lengths, matmul_params, matmul_peak, step_flops
from delia.tools.bench.memory import memory_by_ratio, memory_ratios, peak_rss_bytes
from delia.tools.bench.sampling import time_sampling
from delia.tools.bench.training import CountingCollator, bench_data, time_hf_trainer, time_ours, time_trl

__all__ = [
    "CountingCollator",
    "example_lengths",
    "matmul_params",
    "matmul_peak",
    "peak_rss_bytes",
    "ratios",
    "run_bench",
    "step_flops",
    "table",
]


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


def machine() -> dict[str, Any]:

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
    if "sampling_workload" in results:
        w = results["sampling_workload"]
        lines.append(
            f"{'sample workload':<36}{w['prompts']:>10} prompts of {w['prompt_tokens_mean']:.0f} tokens "
            f"(max {w['prompt_tokens_max']}), replies up to {w['max_new_tokens']}"
        )
    for name, value in results.get("sampling_tokens_per_s", {}).items():
        mean_reply = results.get("sampling_reply_tokens", {}).get(name.removeprefix("sample/"))
        reply = f"  (replies {mean_reply:.0f} tokens on average)" if mean_reply is not None else ""
        lines.append(f"{name:<36}{value:10.1f} generated tok/s{reply}")
    for name, why in results.get("sampling_skipped", {}).items():
        lines.append(f"{'sample/' + name:<36}{'skipped':>10} ({why})")
    for name, entry in results.get("sampling_logprob", {}).items():
        diff = entry.get("minus_transformers")
        versus = (
            f"  {diff:+.3f} +- {entry['se_of_difference']:.3f} vs transformers" if diff is not None else ""
        )
        lines.append(f"{'logprob/' + name:<36}{entry['mean']:10.3f} +- {entry['se']:.3f} per token{versus}")
    if "mfu" in results:
        lines.append(f"{'mfu (ours / matmul peak)':<36}{results['mfu']['mfu']:10.3f}")
    for name, value in results.get("peak_rss_bytes", {}).items():
        lines.append(f"memory/{name:<29}{value / 2**30:10.2f} GiB peak RSS")
    for name, value in results["ratios"].items():
        lines.append(f"{name:<36}{value:10.2f}x")
    return "\n".join(lines)
