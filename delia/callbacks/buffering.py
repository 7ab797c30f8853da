"""Buffering-effect diagnostics (``callbacks.buffering``): the paper's two claims about gradients, measured.

1. Trained on their own, the diverse examples' gradients largely cancel each other out.
2. Trained with the task, they damp the parts of the task gradient that are specific to it.

Every ``every_n_steps`` optimizer steps (and at step 0), on a fixed probe of ``k`` downstream examples
and ``k`` diverse examples that training never sees (from the eval split and the held-out diverse slice),
the callback takes one gradient per example of the trainable parameters (LoRA and the new-token rows)
and logs, for all of them together and per parameter group (``lora``, ``new_token``):

- ``buffer/diverse_cancellation`` = |mean of the diverse gradients| / mean of their norms: 1 when they
  all point the same way; ``buffer/task_cancellation`` the same for the task gradients;
- ``buffer/task_diverse_cos``: the cosine between the mean task and the mean diverse gradient;
- ``buffer/task_kept``: the share of the mean task gradient's squared norm left after removing its
  component along the mean diverse gradient (1 - cos^2).

Each statistic comes with the value it takes under "no effect", derived from these gradients, and an
interval (DESIGN.md section 8):

- ``_random``: cancellation of k mutually orthogonal gradients of these norms n_i,
  sqrt(mean n^2) / (mean n * sqrt(k)) (1/sqrt(k) only when the norms are equal); ``_vs_random`` the
  measured value over it (about 1: the gradients cancel as much as unrelated directions do);
- ``_null95``: the 95th percentile of the statistic when each gradient's sign is flipped at random
  (:data:`NULL_DRAWS` draws; that keeps the norms and the per-example directions and removes any agreement
  between examples); for the cosine, of its magnitude: how large |cos| gets with no relation at this k;
- ``_lo``, ``_hi``: a 95% interval from the jackknife over the probe examples (leave one out, +- 1.96 SE);
- ``buffer/{task,diverse}_norm_mean``, ``_norm_rms``: the per-example gradient norms behind ``_random``.

All of it is computed from the k x k Gram matrices of the gradients (inner products), so a measurement costs
the gradients and nothing more; the sign flips draw from a generator of their own, never the global one.

The gradients come from ``torch.autograd.grad`` in eval mode: no ``.grad`` is touched, no dropout runs,
no random number is drawn, so training goes on exactly as without the callback. Off by default: one
measurement costs 2k single-example backward passes (``buffer/seconds`` says how long).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import lightning as L
import torch

from delia.data.datamodule import collate
from delia.data.tokenize import encode_all
from delia.model.generate import evaluating
from delia.module import token_losses

log = logging.getLogger(__name__)
GROUPS = {"lora": "lora_", "new_token": "trainable_tokens"}
NULL_DRAWS = 2000  # sign-flip draws for the no-effect distributions
Z95 = 1.959964


def cancellation(grads: torch.Tensor) -> float:
    """|mean of the rows| / mean of the row norms (rows: one flattened gradient per example)."""
    return _cancellation_from_gram(_gram(grads, grads))


def _gram(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() @ b.double().T).cpu()


def _cancellation_from_gram(gram: torch.Tensor) -> float:
    """|mean of the rows| / mean row norm from the rows' Gram matrix."""
    ones = torch.ones(gram.shape[0], dtype=gram.dtype)
    mean_norm = gram.diagonal().clamp(min=0).sqrt().mean()
    return float((ones @ gram @ ones).clamp(min=0).sqrt() / gram.shape[0] / mean_norm.clamp(min=1e-300))


def _cos_from_grams(
    tt: torch.Tensor, dd: torch.Tensor, td: torch.Tensor, s: Any = None, r: Any = None
) -> float:
    """The cosine of the two means from the Gram matrices (rows flipped by ``s`` and ``r``)."""
    s = torch.ones(tt.shape[0], dtype=tt.dtype) if s is None else s
    r = torch.ones(dd.shape[0], dtype=dd.dtype) if r is None else r
    denominator = ((s @ tt @ s) * (r @ dd @ r)).clamp(min=1e-300).sqrt()
    return float((s @ td @ r) / denominator)


def _jackknife(left_out: list[float], full: float) -> tuple[float, float]:
    """A 95% interval around ``full`` from the leave-one-out values of the statistic (+- 1.96 SE)."""
    values, k = torch.tensor(left_out, dtype=torch.float64), len(left_out)
    se = float(((k - 1) / k * ((values - values.mean()) ** 2).sum()).sqrt())
    return full - Z95 * se, full + Z95 * se


def _without(k: int, i: int) -> list[int]:
    return [j for j in range(k) if j != i]


def _signs(draws: int, k: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (draws, k), generator=generator, dtype=torch.float64) * 2 - 1


def cancellation_stats(gram: torch.Tensor, name: str, generator: torch.Generator) -> dict[str, float]:
    """Cancellation with its random-direction value, its sign-flip 95th percentile and its interval."""
    k = gram.shape[0]
    norms = gram.diagonal().clamp(min=0).sqrt()
    measured = _cancellation_from_gram(gram)
    random = float((norms**2).mean().sqrt() / (norms.mean() * k**0.5).clamp(min=1e-300))
    signs = _signs(NULL_DRAWS, k, generator)
    null = ((signs @ gram) * signs).sum(dim=1).clamp(min=0).sqrt() / k / norms.mean().clamp(min=1e-300)
    left_out = [_cancellation_from_gram(gram[_without(k, i)][:, _without(k, i)]) for i in range(k)]
    lo, hi = _jackknife(left_out, measured)
    return {
        f"{name}_cancellation": measured,
        f"{name}_cancellation_random": random,
        f"{name}_cancellation_vs_random": measured / random if random else float("nan"),
        f"{name}_cancellation_null95": float(null.quantile(0.95)),
        f"{name}_cancellation_lo": lo,
        f"{name}_cancellation_hi": hi,
        f"{name}_norm_mean": float(norms.mean()),
        f"{name}_norm_rms": float((norms**2).mean().sqrt()),
    }


def agreement(task: torch.Tensor, diverse: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """Cancellation of each set, the cosine of their means, and the task share left off the diverse mean,
    each with its no-effect value and interval (see the module docstring)."""
    generator = torch.Generator().manual_seed(seed)
    tt, dd, td = _gram(task, task), _gram(diverse, diverse), _gram(task, diverse)
    cos = _cos_from_grams(tt, dd, td)
    k_t, k_d = tt.shape[0], dd.shape[0]
    s, r = _signs(NULL_DRAWS, k_t, generator), _signs(NULL_DRAWS, k_d, generator)
    quad = lambda m, a, b: ((a @ m) * b).sum(dim=1)  # noqa: E731  per draw: a_i^T m b_i
    null = (quad(td, s, r) / (quad(tt, s, s) * quad(dd, r, r)).clamp(min=1e-300).sqrt()).abs()

    def cos_without(i: int) -> float:  # leave the i-th pair out (a task and a diverse example)
        t, d = _without(k_t, i % k_t), _without(k_d, i % k_d)
        return _cos_from_grams(tt[t][:, t], dd[d][:, d], td[t][:, d])

    lo, hi = _jackknife([cos_without(i) for i in range(max(k_t, k_d))], cos)
    return {
        **cancellation_stats(dd, "diverse", generator),
        **cancellation_stats(tt, "task", generator),
        "task_diverse_cos": cos,
        "task_diverse_cos_null95": float(null.quantile(0.95)),
        "task_diverse_cos_lo": lo,
        "task_diverse_cos_hi": hi,
        "task_kept": 1.0 - cos**2,
    }


def example_gradients(model: Any, items: list[dict[str, list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """One flattened gradient per example (rows), per parameter group and for all trainable parameters."""
    names = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    rows: list[list[torch.Tensor]] = []
    device = names[0][1].device
    for item in items:
        batch = {k: v.to(device) for k, v in collate([item], pad_id).items()}
        sums, counts = token_losses(model, batch)
        loss = sums.sum() / counts.sum().clamp(min=1)
        rows.append([g.detach().float().flatten() for g in torch.autograd.grad(loss, [p for _, p in names])])
    result = {"all": torch.stack([torch.cat(row) for row in rows])}
    for group, marker in GROUPS.items():
        picked = [i for i, (name, _) in enumerate(names) if marker in name]
        if picked:
            result[group] = torch.stack([torch.cat([row[i] for i in picked]) for row in rows])
    return result


class BufferingDiagnostics(L.Callback):
    """Log the buffering measures at step 0 and every ``every_n_steps`` steps (see the module docstring).

    ``probe(task_records, diverse_records, tokenizer, max_length)`` sets the examples before training.
    """

    def __init__(self, every_n_steps: int = 8, k: int = 8) -> None:
        if every_n_steps < 1 or k < 2:
            raise ValueError("callbacks.buffering needs every_n_steps >= 1 and k >= 2")
        self.every_n_steps, self.k = every_n_steps, k
        self.items: dict[str, list[dict[str, list[int]]]] = {}
        self.pad_id = 0
        self.history: list[tuple[int, dict[str, float]]] = []

    def probe(
        self, task: list[dict[str, Any]], diverse: list[dict[str, Any]], tokenizer: Any, max_length: int
    ) -> None:
        """The fixed probe: the first ``k`` records of each (records training never sees)."""
        for source, records in (("task", task), ("diverse", diverse)):
            self.items[source] = encode_all(
                tokenizer, records[: self.k], max_length, "truncate", f"buffering {source}"
            )
        self.pad_id = tokenizer.pad_token_id

    def measure(self, model: Any) -> dict[str, float]:
        start = time.perf_counter()
        with evaluating(model):
            task = example_gradients(model, self.items["task"], self.pad_id)
            diverse = example_gradients(model, self.items["diverse"], self.pad_id)
        metrics = {}
        for group in task:
            suffix = "" if group == "all" else f"_{group}"
            metrics.update(
                {f"buffer/{k}{suffix}": v for k, v in agreement(task[group], diverse[group]).items()}
            )
        metrics["buffer/seconds"] = time.perf_counter() - start
        return metrics

    def _log(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self.items.get("task") or not self.items.get("diverse") or not trainer.is_global_zero:
            return
        step = trainer.global_step
        if self.history and self.history[-1][0] == step:
            return
        metrics = self.measure(pl_module.model)
        self.history.append((step, metrics))
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # The same rule as after a batch: step 0, and a resume at a multiple of every_n_steps whose point the
        # checkpoint's history lacks; a resume anywhere else waits for the next multiple, as an unbroken run.
        self.on_train_batch_end(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._log(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._log(trainer, pl_module)

    def summary(self) -> dict[str, float]:
        """For metrics.json: the step-0 measurement (if the history has one), the last, and the mean seconds."""
        if not self.history:
            return {}
        (first_step, first), last = self.history[0], self.history[-1][1]
        out = {f"{k}_step0": v for k, v in first.items() if k != "buffer/seconds" and first_step == 0}
        out.update({k: v for k, v in last.items() if k != "buffer/seconds"})
        out["buffer/seconds"] = sum(m["buffer/seconds"] for _, m in self.history) / len(self.history)
        out["buffer/measurements"] = float(len(self.history))
        return out

    def state_dict(self) -> dict[str, Any]:
        return {"history": [[step, dict(m)] for step, m in self.history]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = [(int(step), dict(m)) for step, m in state_dict.get("history", [])]
