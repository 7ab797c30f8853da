"""Where llama.cpp sampling spends its time (README: "What bounds llama.cpp here").

Times the engine's own calls (``llama_decode``, the sampler, the admission of new prompts) while
``delia.diverse.llamacpp.LlamaCppEngine`` answers chat prompts, and compares the matmul speed of torch on
one thread at the decode step's shape. Needs a converted model: any ``model.gguf`` under
``<cache>/engines/llamacpp/`` (a ``delia-train`` or ``delia-bench`` run with the llama.cpp sampler writes it).

    python notebooks/profile_llamacpp.py --gguf <cache>/engines/llamacpp/<name>/model.gguf --workers 1 --slots 16
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from delia.diverse import llamacpp
from delia.model.generate import end_of_turn_ids

QUESTIONS = (
    "Write a short story about a cat.",
    "Explain how rain forms.",
    "List three uses of copper.",
    "What is a prime number?",
)
TIMED = {
    "_decode": "llama_decode",
    "_sample": "sampling",
    "_admit": "admission (its prefill is inside llama_decode)",
}


def timed(method: Callable[..., Any], name: str, seconds: Counter[str]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            seconds[name] += time.perf_counter() - start

    return wrapper


def matmul_gflops(dtype: torch.dtype, rows: int, hidden: int, out: int, repeats: int = 400) -> float:
    """torch on one thread: GFLOP/s of a (rows x hidden) by (hidden x out) product."""
    torch.set_num_threads(1)
    x, w = torch.randn(rows, hidden, dtype=dtype), torch.randn(hidden, out, dtype=dtype)
    for _ in range(5):
        x @ w
    start = time.perf_counter()
    for _ in range(repeats):
        x @ w
    return 2 * rows * hidden * out * repeats / (time.perf_counter() - start) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, required=True)
    parser.add_argument(
        "--tokenizer", type=Path, help="the model's folder (default: found in the same cache)"
    )
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--slots", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer or cached_tokenizer(args.gguf))
    chats = [[{"role": "user", "content": f"{QUESTIONS[k % 4]} ({k})"}] for k in range(args.prompts)]
    texts = [tokenizer.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in chats]
    prompts = [tokenizer.encode(t, add_special_tokens=False) for t in texts]
    seconds: Counter[str] = Counter()
    for attr, name in TIMED.items():
        setattr(llamacpp._Decoder, attr, timed(getattr(llamacpp._Decoder, attr), name, seconds))
    engine = llamacpp.LlamaCppEngine(args.gguf, args.workers, args.slots)
    stop_ids = end_of_turn_ids(tokenizer)
    settings = {
        "temperature": 0.7,
        "top_p": 0.95,
        "max_new_tokens": args.max_new_tokens,
        "stop_ids": stop_ids,
    }
    start, tokens = time.perf_counter(), 0
    for _, new, _ in engine.run(prompts, list(range(args.prompts)), settings):
        tokens += len(new)
    wall = time.perf_counter() - start
    engine.close()
    print(f"{args.gguf.parent.name}: {args.workers} workers x {args.slots} slots, {args.prompts} prompts")
    print(f"  {tokens} tokens in {wall:.1f} s: {tokens / wall:.1f} generated tok/s")
    for name, spent in seconds.items():  # summed over the worker threads
        print(f"  {name}: {spent:.1f} s ({spent / wall / args.workers:.0%} of the workers' time)")
    for dtype in (torch.float32, torch.bfloat16):  # SmolLM2-135M's hidden and MLP sizes, 16 sequences
        print(
            f"  torch, 1 thread, {dtype}: 16 x 576 by 576 x 1536 at {matmul_gflops(dtype, 16, 576, 1536):.0f} GFLOP/s"
        )


def cached_tokenizer(gguf: Path) -> Path:
    """The tokenizer of the model that ``gguf`` was converted from: ``<cache>/models/<model name>-*``."""
    cache, name = gguf.parents[3], gguf.parent.name.rsplit("-", 2)[0]  # <name>-<compute type>-<key>
    found = sorted((cache / "models").glob(f"{name}-*/tokenizer.json"))
    if not found:
        raise SystemExit(
            f"--tokenizer: no {cache / 'models' / name}-*/tokenizer.json; pass the model's folder"
        )
    return found[0].parent


if __name__ == "__main__":
    main()
