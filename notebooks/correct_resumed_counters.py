"""Correct the exposure counters of a job that was stopped and resumed before the counters survived a resume.

Until 2026-12-04 a resumed run counted only the examples of its last part (``train/seen_*`` and
``protocol/task_exposure``), e.g. ``notebooks/results/ratio_cpu/r64_s2/0`` (stopped at step 400 of 780).
A finished run trained every step of its seeded plan, so its counts are the plan's: this script rebuilds
the plan from the job's ``config.yaml`` (the schedule, the data sizes, the steps), counts each source, and
writes the counts into ``metrics.json``, keeping the values as written under ``corrected.was``.

    python notebooks/correct_resumed_counters.py notebooks/results/ratio_cpu/r64_s2/0
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from omegaconf import OmegaConf

from delia.data.mixing import DIVERSE, TASK
from delia.schedule import build_schedule

KEYS = ("train/seen_task_examples", "train/seen_diverse_examples", "protocol/task_exposure")


def plan_counts(job: Path) -> dict[str, float]:
    cfg = OmegaConf.load(job / "config.yaml")
    payload = json.loads((job / "metrics.json").read_text())["metrics"]
    n_task, n_diverse = int(payload["train/downstream_examples"]), int(payload["train/diverse_examples"])
    total = int(cfg.trainer.max_steps) * int(cfg.trainer.accumulate_grad_batches) * int(cfg.data.batch_size)
    schedule = build_schedule(cfg.schedule)
    epochs = payload.get("protocol/task_epochs")
    rng = random.Random(int(cfg.seed))
    if epochs is None:
        plan = schedule.plan(n_task, n_diverse, total, int(cfg.trainer.max_steps), rng)
    else:
        plan = schedule.exposure_plan(n_task, n_diverse, int(epochs), total, rng)
    task = sum(source == TASK for source, _ in plan)
    diverse = sum(source == DIVERSE for source, _ in plan)
    return {KEYS[0]: task, KEYS[1]: diverse, KEYS[2]: task / n_task}


def correct(job: Path) -> dict[str, float]:
    path = job / "metrics.json"
    payload = json.loads(path.read_text())
    counts = plan_counts(job)
    payload["corrected"] = {
        "by": "notebooks/correct_resumed_counters.py",
        "was": {k: payload["metrics"][k] for k in KEYS},
    }
    payload["metrics"].update(counts)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return counts


if __name__ == "__main__":
    for folder in sys.argv[1:]:
        print(folder, correct(Path(folder)))
