"""Generated tokens a second of the sampler backends."""

from __future__ import annotations

import logging
import time

from omegaconf import DictConfig, OmegaConf

from delia.data.tokenize import render
from delia.diverse import load_queries, sampling_prompt
from delia.diverse.samplers import generate_batch
from delia.model import load_base

log = logging.getLogger(__name__)


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
