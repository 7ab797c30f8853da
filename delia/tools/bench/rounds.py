"""Training throughput measured in rounds: every recipe once per round, the recipes alternated, so that a
machine that speeds up or slows down over the run moves every recipe alike.

On a shared 2-core machine single steps vary several-fold (3.9 s to 13.7 s for one recipe, one run), and
two recipes timed one after the other for a few steps could rank either way. So each figure here is a
median over ``bench.rounds`` rounds with its spread (min and max over the rounds), and every ratio is
computed per round (ours and the peer timed in the same round) before its median and spread are taken.
A ratio whose spread crosses 1 is not a ranking (:func:`ranking`).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import asdict
from typing import Any

from omegaconf import DictConfig, OmegaConf

from delia.tools.bench.flops import Timing, matmul_peak
from delia.tools.bench.training import BenchData, time_recipe

log = logging.getLogger(__name__)
OURS = "ours"


def spread(values: list[float]) -> dict[str, Any]:
    finite = [v for v in values if v == v]
    if not finite:
        return {"median": float("nan"), "min": float("nan"), "max": float("nan"), "per_round": values}
    return {"median": statistics.median(finite), "min": min(finite), "max": max(finite), "per_round": values}


def ranking(ratio: dict[str, Any]) -> str:
    """``ahead`` / ``behind`` when every round agrees; otherwise the rounds cannot rank the two."""
    if ratio["min"] > 1:
        return "ahead"
    if ratio["max"] < 1:
        return "behind"
    return "not a ranking (the spread crosses 1)"


def workload_config(cfg: DictConfig, workload: str) -> DictConfig:
    if workload != "mixed":
        return cfg
    return OmegaConf.merge(
        cfg, {"data": {"max_length": int(cfg.bench.mixed_max_length), "on_overlength": "truncate"}}
    )


def timed_rounds(cfg: DictConfig, workloads: dict[str, BenchData]) -> dict[str, Any]:
    """Every (workload, precision, recipe) timed once per round; the order of the recipes turns each round."""
    recipes, precisions = list(cfg.bench.recipes), list(cfg.bench.precisions)
    timings: dict[tuple[str, str, str], list[Timing]] = {}
    for r in range(int(cfg.bench.rounds)):
        order = recipes[r % len(recipes) :] + recipes[: r % len(recipes)]
        for workload, data in workloads.items():
            wcfg = workload_config(cfg, workload)
            for precision in precisions if r % 2 == 0 else precisions[::-1]:
                for recipe in order:
                    log.info("round %d: %s, %s, %s", r + 1, workload, precision, recipe)
                    timing = time_recipe(recipe, wcfg, data, precision)
                    timings.setdefault((workload, precision, recipe), []).append(timing)
    return summarise(timings, cfg)


def summarise(timings: dict[tuple[str, str, str], list[Timing]], cfg: DictConfig) -> dict[str, Any]:
    """Tokens/s per cell with its spread; each ratio of ours to a peer per round; MFU per precision."""
    train: dict[str, Any] = {}
    ratios: dict[str, Any] = {}
    for (workload, precision, recipe), runs in timings.items():
        train.setdefault(workload, {}).setdefault(precision, {})[recipe] = {
            **spread([t.tokens_per_s() for t in runs]),
            "raw": [asdict(t) for t in runs],
        }
    for workload, by_precision in train.items():
        for precision, by_recipe in by_precision.items():
            ours = by_recipe.get(OURS)
            if ours is None:
                continue
            for recipe, cell in by_recipe.items():
                if recipe == OURS:
                    continue
                per_round = [
                    a / b if b else float("nan")
                    for a, b in zip(ours["per_round"], cell["per_round"], strict=True)
                ]
                ratio = spread(per_round)
                ratios[f"{workload}/{precision}/ours_vs_{recipe}"] = {**ratio, "ranking": ranking(ratio)}
        if {"32-true", "bf16-mixed"} <= set(by_precision) and OURS in by_precision["32-true"]:
            fp32, bf16 = (
                by_precision["32-true"][OURS]["per_round"],
                by_precision["bf16-mixed"][OURS]["per_round"],
            )
            ratio = spread([b / a if a else float("nan") for a, b in zip(fp32, bf16, strict=True)])
            ratios[f"{workload}/ours_bf16_vs_ours_fp32"] = {**ratio, "ranking": ranking(ratio)}
    return {"train": train, "train_ratios": ratios, "mfu": mfu(timings, cfg)}


def mfu(timings: dict[tuple[str, str, str], list[Timing]], cfg: DictConfig) -> dict[str, Any]:
    """Our achieved FLOP/s over the matmul peak of the same precision, measured here now, per round."""
    out: dict[str, Any] = {}
    for precision in cfg.bench.precisions:
        dtype = "bfloat16" if str(precision).startswith("bf16") else "float32"
        peak = matmul_peak(int(cfg.bench.matmul_size), dtype=dtype)
        for (workload, p, recipe), runs in timings.items():
            if p == precision and recipe == OURS:
                values = [t.flops_per_s() / peak for t in runs]
                out[f"{workload}/{precision}"] = {
                    **spread(values),
                    "matmul_peak_flops_per_s": peak,
                    "dtype": dtype,
                }
    return out
