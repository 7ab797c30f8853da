"""Generated tokens a second of the sampler backends, side by side, and the log-probability check.

Every backend in ``bench.samplers`` (``transformers``, ``llamacpp:<compute type>``,
``torch_engine:<dtype>``, ``vllm``) answers the same ``bench.sample_prompts`` diverse prompts (the release's
reference-then-ask prompts, rendered with the chat template) at the diverse group's settings, with answers
of up to ``bench.sample_max_new_tokens`` tokens, the way delia-sample drives it (batches of length-sorted
prompts, or every prompt at once for an engine that batches continuously). Generated tokens count every
reply token plus its end-of-turn token.

The check: the mean log-probability per token of each backend's replies under the float32 transformers
model (temperature 1), next to that of transformers' own replies to the same prompts. A backend whose
compute type changes the samples (a quantized one) would show a lower mean; the difference is reported
with its standard error. A backend that is not installed, or cannot serve this model (``openvino`` without
a GGUF file), is reported under ``skipped`` with its one-line reason; the others are still timed.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from delia.data.tokenize import render
from delia.diverse import load_queries, query_order, sampling_prompt
from delia.diverse.backend import Sampled, StreamingSampler
from delia.diverse.queries import query_for
from delia.diverse.samplers import check_installed, make_sampler
from delia.infra.errors import DeliaError
from delia.model import base_model_folder, load_base, model_identity
from delia.model.generate import end_of_turn_ids

log = logging.getLogger(__name__)


def bench_prompts(cfg: DictConfig, tokenizer: Any) -> list[str]:
    """The first ``bench.sample_prompts`` training queries in delia-sample's order, as prompts."""
    queries = load_queries(cfg.diverse.queries)
    order = query_order(queries, int(cfg.diverse.seed), heldout=False)
    n = int(cfg.bench.sample_prompts)
    return [
        render(tokenizer, sampling_prompt(query_for(i, order, queries), cfg.diverse.use_reference), True)
        for i in range(n)
    ]


def sampler_settings(cfg: DictConfig, spec: str) -> tuple[str, DictConfig]:
    """``llamacpp:q4_1`` -> (``llamacpp_q4_1``, the diverse config with that sampler and compute type).

    ``openvino`` samples the model's own GGUF file (a model loaded from one, such as the embedded one)."""
    name, _, compute = str(spec).partition(":")
    override: dict[str, Any] = {"sampler": name, "max_new_tokens": int(cfg.bench.sample_max_new_tokens)}
    if name == "openvino" and cfg.model.get("source") == "gguf_package":
        from delia.model.sources import gguf_location

        override["openvino"] = {"gguf": str(gguf_location(cfg.model))}
    elif compute:
        override[name] = {"compute_type" if name == "llamacpp" else "dtype": compute}
    return name + (f"_{compute}" if compute else ""), OmegaConf.merge(cfg.diverse, override)


def sample_all(backend: Any, prompts: list[str], cfg: DictConfig) -> list[Sampled]:
    """Answer every prompt as delia-sample would; seeds per prompt index."""
    order = sorted(range(len(prompts)), key=lambda k: len(prompts[k]))
    seeds = [int(cfg.seed) * 1_000_003 + k for k in order]
    replies: dict[int, Sampled] = {}
    if isinstance(backend, StreamingSampler):
        for j, reply in backend.stream([prompts[k] for k in order], seeds):
            replies[order[j]] = reply
    else:
        size = int(cfg.batch_size)
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            for k, reply in zip(
                chunk, backend.generate([prompts[k] for k in chunk], seeds[start]), strict=True
            ):
                replies[k] = reply
    return [replies[k] for k in range(len(prompts))]


def reply_ids(tokenizer: Any, reply: Sampled) -> list[int]:
    """The reply's tokens, plus the end-of-turn token when it stopped there."""
    ids = list(tokenizer(reply.text, add_special_tokens=False)["input_ids"])
    return ids + ([end_of_turn_ids(tokenizer)[0]] if reply.finish == "stop" else [])


@torch.inference_mode()
def mean_logprobs(model: Any, tokenizer: Any, prompts: list[str], replies: list[list[int]]) -> list[float]:
    """Per reply: the mean log-probability of its tokens under ``model`` at temperature 1."""
    means = []
    for prompt, reply in zip(prompts, replies, strict=True):
        if not reply:
            continue
        context = list(tokenizer(prompt, add_special_tokens=False)["input_ids"])
        ids = torch.tensor([context + reply], device=model.device)
        logits = model(ids).logits[0, len(context) - 1 : -1].float()
        picked = torch.log_softmax(logits, -1).gather(1, ids[0, len(context) :, None])
        means.append(float(picked.mean()))
    return means


def mean_and_se(values: list[float]) -> tuple[float, float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / max(len(values) - 1, 1)
    return mean, math.sqrt(var / len(values))


def workload(tokenizer: Any, prompts: list[str], max_new_tokens: int) -> dict[str, float]:
    """What the sampling figures are measured on: how many prompts, how long, how long a reply may be."""
    lengths = [len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    return {
        "prompts": len(prompts),
        "prompt_tokens_mean": sum(lengths) / len(lengths),
        "prompt_tokens_max": max(lengths),
        "max_new_tokens": max_new_tokens,
    }


def time_sampling(cfg: DictConfig) -> dict[str, Any]:
    """Per backend: generated tokens/s, replies that ended, mean log-prob and its difference to transformers."""
    model, tokenizer = load_base(cfg.model, cfg.paths.cache_dir)
    model.eval()
    cache_dir = Path(cfg.paths.cache_dir)
    folder = base_model_folder(cfg.model, cache_dir)
    prompts = bench_prompts(cfg, tokenizer)
    results: dict[str, Any] = {
        "tokens_per_s": {},
        "logprob": {},
        "stopped": {},
        "reply_tokens": {},
        "skipped": {},
    }
    results["workload"] = workload(tokenizer, prompts, int(cfg.bench.sample_max_new_tokens))
    scores: dict[str, list[float]] = {}
    for spec in cfg.bench.samplers:
        name, sample_cfg = sampler_settings(cfg, spec)
        try:
            check_installed(str(sample_cfg.sampler), "bench.samplers")
            backend = make_sampler(model, tokenizer, sample_cfg, folder, cache_dir, model_identity(cfg.model))
        except DeliaError as cannot:  # not installed, or not for this model (openvino without a GGUF file):
            results["skipped"][name] = str(cannot)  # reported, not timed; the other backends still run
            log.warning("%s: skipped: %s", name, cannot)
            continue
        try:
            sample_all(backend, prompts[:2], OmegaConf.merge(sample_cfg, {"max_new_tokens": 4}))  # warm up
            start = time.perf_counter()
            replies = sample_all(backend, prompts, sample_cfg)
            seconds = time.perf_counter() - start
        finally:
            backend.close()
        ids = [reply_ids(tokenizer, r) for r in replies]
        generated = sum(map(len, ids))
        results["tokens_per_s"][f"sample/{name}"] = generated / seconds
        results["stopped"][name] = sum(r.finish == "stop" for r in replies) / len(replies)
        results["reply_tokens"][name] = generated / len(ids)
        scores[name] = mean_logprobs(model, tokenizer, prompts, ids)
        log.info("%s: %.1f generated tok/s", name, results["tokens_per_s"][f"sample/{name}"])
    reference = scores.get("transformers")
    for name, values in scores.items():
        mean, se = mean_and_se(values)
        entry = {"mean": mean, "se": se}
        if reference and name != "transformers":
            ref_mean, ref_se = mean_and_se(reference)
            entry["minus_transformers"] = mean - ref_mean
            entry["se_of_difference"] = math.sqrt(se**2 + ref_se**2)
        results["logprob"][name] = entry
    return results
