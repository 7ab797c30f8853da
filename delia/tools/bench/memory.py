"""Peak resident memory of a few training steps at two diverse ratios, each in a child process."""

from __future__ import annotations

import logging
import multiprocessing as mp
import resource
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from delia.data.mixing import diverse_count
from delia.model import load_base
from delia.tools.bench.training import BenchData, bench_data, time_ours

log = logging.getLogger(__name__)


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
