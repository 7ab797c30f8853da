"""How a job is launched: Hydra multirun checks, the GPU pool of parallel (joblib) sweeps, resuming."""

from __future__ import annotations

import fcntl
import logging
import os
from pathlib import Path
from typing import IO

from omegaconf import DictConfig

from delia.infra.errors import DeliaError

log = logging.getLogger(__name__)
_held: list[IO[str]] = []  # GPU locks held for the life of this worker process


def hydra_mode() -> str | None:
    """``RUN`` or ``MULTIRUN`` inside a Hydra app, else None."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return None
    return str(HydraConfig.get().mode.name)


def launched_by_torchrun_or_srun() -> bool:
    return "LOCAL_RANK" in os.environ or ("SLURM_PROCID" in os.environ and "SLURM_NTASKS" in os.environ)


def _strategy_name(cfg: DictConfig) -> str:
    strategy = cfg.trainer.get("strategy", "auto")
    if isinstance(strategy, str):
        return strategy
    return str(strategy.get("_target_", "")).rsplit(".", 1)[-1].lower().replace("strategy", "")


def refuse_relaunch_in_multirun(cfg: DictConfig, mode: str | None) -> None:
    """Lightning's ``ddp`` relaunches the script with its argv: under a multirun every rank would rerun the sweep."""
    strategy = _strategy_name(cfg)
    options = cfg.trainer.get("strategy")
    start_method = options.get("start_method") if isinstance(options, DictConfig) else None
    spawns_itself = strategy in ("ddp", "fsdp") and start_method != "spawn"
    if (
        mode == "MULTIRUN"
        and spawns_itself
        and cfg.trainer.devices != 1
        and not launched_by_torchrun_or_srun()
    ):
        raise DeliaError(
            f"trainer={strategy} inside a Hydra multirun would make each rank rerun the sweep; use "
            f"hydra/launcher=submitit_slurm (tasks_per_node == gpus_per_node), one torchrun job per run, "
            f"trainer=ddp_spawn, or hydra/launcher=joblib with launcher.gpus_per_job"
        )


def acquire_gpus(gpus_per_job: int, num_gpus: int, pool_dir: Path) -> list[int]:
    """Take ``gpus_per_job`` free GPUs of the pool and keep them for this worker process.

    Each GPU is a lock file; a joblib worker takes its GPUs once and keeps them for every job it
    runs, so no two concurrent jobs share a GPU, however long each job takes. Sets
    ``CUDA_VISIBLE_DEVICES`` (before CUDA starts in this process).
    """
    if _held:
        return [int(Path(h.name).stem.removeprefix("gpu")) for h in _held]
    pool_dir.mkdir(parents=True, exist_ok=True)
    taken: list[int] = []
    for gpu in range(num_gpus):
        handle = (pool_dir / f"gpu{gpu}.lock").open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            continue
        _held.append(handle)
        taken.append(gpu)
        if len(taken) == gpus_per_job:
            break
    if len(taken) < gpus_per_job:
        for handle in _held:
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
        _held.clear()
        raise DeliaError(
            f"launcher.gpus_per_job={gpus_per_job}: only {len(taken)} of launcher.num_gpus={num_gpus} GPUs are free; "
            f"set hydra.launcher.n_jobs <= num_gpus / gpus_per_job"
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, taken))
    log.info("GPU pool: this job uses GPUs %s", taken)
    return taken


def setup_gpu_pool(cfg: DictConfig) -> list[int]:
    """Apply ``launcher.gpus_per_job`` (parallel sweeps on one machine); no-op when unset."""
    per_job = cfg.launcher.get("gpus_per_job")
    if not per_job:
        return []
    num = cfg.launcher.get("num_gpus")
    if num is None:
        import torch

        num = torch.cuda.device_count()
    return acquire_gpus(int(per_job), int(num), Path(cfg.launcher.pool_dir))


def is_launcher_rank() -> bool:
    """False in the extra ranks that torchrun/srun start: they share rank 0's run dir."""
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"


def checkpoint_to_resume(cfg: DictConfig, run_dir: Path) -> str | None:
    """The checkpoint a resumed run continues from.

    ``resume=true`` or ``ckpt_path=last``: ``<run dir>/checkpoints/last.ckpt`` must exist;
    ``resume=auto``: that checkpoint if it exists (a requeued job), else a fresh start;
    ``ckpt_path=<file>``: that file.
    """
    last = run_dir / "checkpoints" / "last.ckpt"
    if str(cfg.resume) == "auto":
        return str(last) if last.is_file() else None
    wanted = "last" if cfg.resume else cfg.ckpt_path
    if not wanted:
        return None
    path = last if wanted == "last" else Path(wanted)
    if not path.is_file():
        raise DeliaError(
            f"{path}: no checkpoint to resume from; pass hydra.run.dir=<the killed run's dir> "
            f"(or ckpt_path=<a .ckpt file>), or start a new run without resume"
        )
    return str(path)
