"""Self-sampling with llama.cpp (``diverse.sampler=llamacpp``, through llama-cpp-python's C API).

- The model: the loaded transformers model is written once as a GGUF file at
  ``diverse.llamacpp.compute_type`` (:mod:`delia.diverse.gguf_export`) under
  ``<cache>/engines/llamacpp/<key>/model.gguf``, locked and atomic; the key covers the model identity, the
  llama-cpp-python version, the exporter version and the compute type. Later runs load that file.
- Continuous batching: ``workers`` threads (default one per CPU core), each with its own llama.cpp context
  on one core, decode up to ``slots`` sequences together; a sequence that ends frees its slot for the
  worker's next prompt at once, so no finished row is computed again. The threads share the weights and run in parallel
  (ctypes releases the GIL around each llama.cpp call); one single-thread context per core keeps working
  when other processes load the machine, where a multi-thread context spin-waits on its slowest thread.
- Sampling settings as in the transformers path: temperature, then top-p, then a draw from the
  renormalised distribution (no top-k, min-p or repetition penalty); generation stops on every end-of-turn
  token of the chat template or at ``max_new_tokens``, and each reply says which (``finish``).
- Deterministic given the seed: prompt ``k`` draws from its own generator seeded with ``seeds[k]``, and each
  worker takes a fixed share of the prompts in a fixed order (llama.cpp's sums, hence the sampled tokens,
  can depend on which sequences share a batch). The same prompts, seeds, workers and slots give the same
  replies.
- Prompts are token ids from the model's Hugging Face tokenizer, replies are decoded with it too.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from omegaconf import DictConfig

from delia.diverse.backend import EngineSampler
from delia.diverse.gguf_export import EXPORT_VERSION, export_gguf
from delia.infra.errors import DeliaError
from delia.infra.files import atomic_folder

log = logging.getLogger(__name__)

FIX = (
    '`pip install -e ".[llamacpp]"` (the project\'s llamacpp extra: it compiles llama.cpp with gcc and cmake, '
    "about 20 CPU-minutes once), or set diverse.sampler=torch_engine"
)
DEFAULTS = {"compute_type": "f32", "workers": 0, "slots": 16}
# Quantized weights stay in llama.cpp's plain CPU buffers: its extra buffer types (AMX tiles, repacked
# layouts) segfault in ggml_backend_amx_mul_mat on CPUs with AMX (llama.cpp issue #20824; here q8_0 and
# q4_1 on an Intel Xeon with AMX). f32, bf16 and f16 keep them: f32 sampled 64-72 tok/s with them, 58-68
# without, here.
QUANTIZED = ("q8_0", "q4_1")


def import_llama_cpp() -> ModuleType:
    """The ``llama_cpp`` module, or a one-line :class:`DeliaError` naming the option and the fix."""
    try:
        module = importlib.import_module("llama_cpp")
        for name in (
            "llama_batch_init",
            "llama_sampler_init_top_p",
            "llama_memory_seq_rm",
            "llama_get_memory",
        ):
            getattr(module, name)
        if "kv_unified" not in dict(
            module.llama_context_params._fields_
        ):  # set below; present in 0.3.36, the version tested
            raise AttributeError("kv_unified")
    except (ImportError, AttributeError, OSError):
        raise DeliaError(
            f"diverse.sampler=llamacpp needs llama-cpp-python>=0.3.36, which is not installed or too old: run {FIX}"
        ) from None
    return module


def options(cfg: DictConfig) -> dict[str, Any]:
    """``diverse.llamacpp`` over the defaults; ``workers`` 0 means one per CPU core available."""
    merged = {**DEFAULTS, **dict(cfg.get("llamacpp") or {})}
    workers = int(merged["workers"]) or len(os.sched_getaffinity(0))
    return {"compute_type": str(merged["compute_type"]), "workers": workers, "slots": int(merged["slots"])}


def converted_model(
    model: Any, cache_dir: Path, model_id: dict[str, Any], compute_type: str, version: str
) -> Path:
    """The model as a GGUF file at ``compute_type``, written once under the cache dir (locked, atomic)."""
    import hashlib

    key = {"model": model_id, "engine": f"llama-cpp-python {version}", "export": EXPORT_VERSION}
    key["compute_type"] = compute_type
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    folder = cache_dir / "engines" / "llamacpp" / f"{model_id.get('name', 'model')}-{compute_type}-{digest}"

    def write(tmp: Path) -> None:
        log.info("writing the model for llama.cpp at %s to %s (once)", compute_type, folder)
        export_gguf(model, tmp / "model.gguf", compute_type)
        (tmp / "key.json").write_text(json.dumps(key, indent=2))

    return atomic_folder(folder, write, marker="model.gguf") / "model.gguf"


@dataclass
class _Slot:
    """One sequence being decoded: its prompt index, tokens still to feed, next position, sampler."""

    k: int
    pending: list[int]
    pos: int
    sampler: Any
    out: list[int]


class LlamaCppEngine:
    """A llama.cpp model with worker threads that sample replies by continuous batching."""

    def __init__(self, gguf: Path, workers: int, slots: int, extra_buffers: bool = True) -> None:
        self.lib = import_llama_cpp()
        self.workers, self.slots = workers, slots
        self._silence()
        params = self.lib.llama_model_default_params()
        params.use_extra_bufts = extra_buffers  # see QUANTIZED
        self.model = self.lib.llama_model_load_from_file(str(gguf).encode(), params)
        if not self.model:
            raise DeliaError(
                f"{gguf}: llama.cpp cannot load it; delete that folder to convert the model again"
            )

    def _silence(self) -> None:
        """llama.cpp logs every load to stderr; route its log to nothing (kept alive on the instance)."""
        self.lib.llama_backend_init()
        self._log_cb = self.lib.llama_log_callback(lambda level, text, data: None)
        self.lib.llama_log_set(self._log_cb, None)

    def close(self) -> None:
        if self.model:
            self.lib.llama_model_free(self.model)
            self.model = None

    def run(
        self, prompts: list[list[int]], seeds: list[int], settings: dict[str, Any]
    ) -> Iterator[tuple[int, list[int], bool]]:
        """Yield ``(k, new token ids, stopped at an end-of-turn token)`` for every prompt, as each ends."""
        if not prompts:
            return
        results: queue.Queue[Any] = queue.Queue()
        stop = threading.Event()
        longest = max(len(p) for p in prompts)
        sizes = (longest + int(settings["max_new_tokens"]) + 1, max(longest, self.slots))
        threads = []
        workers = min(self.workers, len(prompts))
        for w in range(workers):
            # a fixed share per worker (every workers-th prompt), taken in order: the batches each
            # sequence is decoded in, hence its logits to the last bit, do not depend on thread timing
            tasks: queue.Queue[int] = queue.Queue()
            for k in range(w, len(prompts), workers):
                tasks.put(k)
            job = (prompts, seeds, settings, tasks, results, stop, sizes)
            threads.append(threading.Thread(target=self._work, args=job, daemon=True))
        for thread in threads:
            thread.start()
        try:
            for _ in prompts:
                item = results.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            stop.set()
            for thread in threads:
                thread.join()

    def _work(self, prompts, seeds, settings, tasks, results, stop, sizes) -> None:  # type: ignore[no-untyped-def]
        ctx = batch = None
        try:
            ctx = self._context(*sizes)
            batch = self.lib.llama_batch_init(sizes[1], 0, 1)
            _Decoder(self.lib, ctx, batch, self.slots, settings).serve(prompts, seeds, tasks, results, stop)
        except BaseException as err:  # handed to the consumer, which raises it
            results.put(err)
        finally:
            if batch is not None:
                self.lib.llama_batch_free(batch)
            if ctx is not None:
                self.lib.llama_free(ctx)

    def _context(self, per_sequence: int, n_batch: int) -> Any:
        params = self.lib.llama_context_default_params()
        params.n_ctx = per_sequence * self.slots
        params.n_batch = params.n_ubatch = n_batch
        params.n_seq_max = self.slots
        params.n_threads = params.n_threads_batch = 1
        params.kv_unified = False  # a cache stream per slot: a token attends to its own sequence only
        params.no_perf = True
        ctx = self.lib.llama_init_from_model(self.model, params)
        if not ctx:
            raise DeliaError(
                f"llama.cpp could not allocate a context of {params.n_ctx} tokens: lower diverse.llamacpp.slots"
            )
        return ctx


class _Decoder:
    """One worker's loop: a new prompt is prefilled alone as soon as a slot is free; then one decode
    step for all active sequences at once, one token each."""

    def __init__(self, lib: ModuleType, ctx: Any, batch: Any, slots: int, settings: dict[str, Any]) -> None:
        self.lib, self.ctx, self.batch, self.settings = lib, ctx, batch, settings
        self.free = list(range(slots))[::-1]
        self.active: dict[int, _Slot] = {}
        self.stops = set(settings["stop_ids"])
        self.memory = lib.llama_get_memory(ctx)

    def serve(self, prompts, seeds, tasks, results, stop) -> None:  # type: ignore[no-untyped-def]
        while not stop.is_set():
            self._admit(prompts, seeds, tasks, results)
            if not self.active:
                return
            outputs = {}
            self.batch.n_tokens = 0
            for seq, slot in self.active.items():
                outputs[seq] = self._put(seq, slot.pos, slot.pending, slot)
            self._decode()
            for seq, index in outputs.items():
                self._sample(seq, index, results)

    def _admit(self, prompts, seeds, tasks, results) -> None:  # type: ignore[no-untyped-def]
        while self.free:
            try:
                k = tasks.get_nowait()
            except queue.Empty:
                return
            seq = self.free.pop()
            slot = _Slot(k, [], 0, self._sampler(int(seeds[k])), [])
            self.active[seq] = slot
            self.batch.n_tokens = 0
            index = self._put(seq, 0, list(prompts[k]), slot)
            self._decode()
            self._sample(seq, index, results)

    def _put(self, seq: int, pos: int, tokens: list[int], slot: _Slot) -> int:
        """Append ``tokens`` of sequence ``seq`` to the batch, logits at the last; return its index."""
        batch, n = self.batch, self.batch.n_tokens
        for j, token in enumerate(tokens):
            batch.token[n + j] = token
            batch.pos[n + j] = pos + j
            batch.n_seq_id[n + j] = 1
            batch.seq_id[n + j][0] = seq
            batch.logits[n + j] = 0
        batch.logits[n + len(tokens) - 1] = 1
        batch.n_tokens = n + len(tokens)
        slot.pos = pos + len(tokens)
        return n + len(tokens) - 1

    def _decode(self) -> None:
        if self.lib.llama_decode(self.ctx, self.batch) != 0:
            raise DeliaError("llama.cpp failed to decode a batch: lower diverse.llamacpp.slots")

    def _sampler(self, seed: int) -> Any:
        lib = self.lib
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(float(self.settings["temperature"])))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(float(self.settings["top_p"]), 1))
        lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(seed & 0xFFFFFFFF))
        return chain

    def _sample(self, seq: int, index: int, results: queue.Queue[Any]) -> None:
        slot = self.active[seq]
        token = int(self.lib.llama_sampler_sample(slot.sampler, self.ctx, index))
        slot.out.append(token)
        stopped = token in self.stops
        if stopped or len(slot.out) >= int(self.settings["max_new_tokens"]):
            results.put((slot.k, slot.out, stopped))
            self.lib.llama_sampler_free(slot.sampler)
            self.lib.llama_memory_seq_rm(self.memory, seq, -1, -1)
            del self.active[seq]
            self.free.append(seq)
        else:
            slot.pending = [token]


class LlamaCppSampler(EngineSampler):
    """``diverse.sampler=llamacpp``: the model converted once, then sampled by :class:`LlamaCppEngine`."""

    def __init__(
        self, model: Any, tokenizer: Any, cfg: DictConfig, cache_dir: Path, model_id: dict[str, Any]
    ) -> None:
        lib = import_llama_cpp()
        opts = options(cfg)
        self.compute_type = opts["compute_type"]
        gguf = converted_model(model, Path(cache_dir), model_id, self.compute_type, lib.__version__)
        extra_buffers = self.compute_type not in QUANTIZED
        engine = LlamaCppEngine(gguf, opts["workers"], opts["slots"], extra_buffers)
        super().__init__(engine, tokenizer, cfg, f"llama.cpp {self.compute_type}")
        log.info(
            "llama.cpp sampler: %s, %d workers x %d slots", self.compute_type, opts["workers"], opts["slots"]
        )
