"""Which precision a run trains in (``trainer.precision``), and whether this machine computes bfloat16.

``trainer.precision=auto`` resolves, before anything loads, to Lightning's ``bf16-mixed`` where the
hardware computes bfloat16 natively (a CUDA GPU that supports it; a CPU whose oneDNN has bfloat16
kernels: AVX512-BF16 or AMX), and to ``32-true`` elsewhere (a CPU with AVX2 only emulates bfloat16, many
times slower than float32). Under ``bf16-mixed`` the adapter weights and the optimizer state stay
float32; only the forward and backward computations autocast. Any other value is Lightning's own and is
kept as given. What ran is written into the config the run saves, ``metrics.json`` and the summary.
No cache key depends on it: the diverse samples, the retention yardsticks before tuning and the
tokenized store are all made outside training.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, open_dict

AUTO = "auto"


def cpu_computes_bfloat16() -> bool:
    """Whether this torch can run bfloat16 matmuls through oneDNN's native kernels on this CPU."""
    probe = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(torch.backends.mkldnn.is_available() and probe is not None and probe())


def gpu_computes_bfloat16() -> bool:
    return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())


def resolve_precision(trainer_cfg: DictConfig) -> str:
    """``trainer.precision`` as Lightning takes it (``auto`` resolved for the accelerator that will run)."""
    requested = str(trainer_cfg.get("precision", "32-true"))
    if requested != AUTO:
        return requested
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    native = gpu_computes_bfloat16() if on_gpu else cpu_computes_bfloat16()
    return "bf16-mixed" if native else "32-true"


def apply_precision(cfg: DictConfig) -> str:
    """Write the resolved precision into ``cfg.trainer.precision``; return it."""
    precision = resolve_precision(cfg.trainer)
    with open_dict(cfg):
        cfg.trainer.precision = precision
    return precision
