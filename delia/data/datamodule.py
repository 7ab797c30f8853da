"""The LightningDataModule that mixes downstream and diverse examples at the diverse ratio."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader, Dataset, Sampler

from delia.data.mixing import DIVERSE, TASK, PlanItem, rank_shard
from delia.data.packing import collate_packed
from delia.data.store import DiverseStore, build_store
from delia.data.tokenize import IGNORE_INDEX, encode_all
from delia.infra.types import Record
from delia.schedule import Schedule


class PlanDataset(Dataset):
    """The examples of one rank's step plan, in order."""

    def __init__(self, examples: dict[int, Sequence[dict[str, list[int]]]], plan: list[PlanItem]) -> None:
        self.examples = examples
        self.plan = plan

    def __len__(self) -> int:
        return len(self.plan)

    def __getitem__(self, i: int) -> dict[str, Any]:
        source, index = self.plan[i]
        return {**self.examples[source][index], "source": source}


class OffsetSampler(Sampler[int]):
    """Indices ``start .. n-1`` once (then ``0 .. n-1`` on later passes): the position in the plan."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.start = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        start, self.start = self.start, 0
        return iter(range(start, self.n))


class ResumableLoader(DataLoader):
    """A DataLoader whose position Lightning saves in checkpoints and restores mid-epoch.

    The state is the number of batches training has consumed (not the number prefetched), so a run
    resumed from a checkpoint continues with exactly the batch an uninterrupted run would train next.
    """

    def __init__(self, dataset: Dataset, batch_size: int, consumed: Callable[[], int], **kwargs: Any) -> None:
        self._offset_sampler = OffsetSampler(len(dataset))
        self._consumed = consumed
        super().__init__(dataset, batch_size=batch_size, sampler=self._offset_sampler, **kwargs)

    def state_dict(self) -> dict[str, int]:
        return {"batches_consumed": self._consumed()}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self._offset_sampler.start = int(state["batches_consumed"]) * int(self.batch_size or 1)


class ListDataset(Dataset):
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


def collate(batch: list[dict[str, Any]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad to the longest example; padding is masked out of attention and labels."""
    width = max(len(item["input_ids"]) for item in batch)
    input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), IGNORE_INDEX, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, item in enumerate(batch):
        n = len(item["input_ids"])
        input_ids[row, :n] = torch.tensor(item["input_ids"])
        labels[row, :n] = torch.tensor(item["labels"])
        attention[row, :n] = 1
    source = torch.tensor([item.get("source", TASK) for item in batch], dtype=torch.long)
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention, "source": source}


class DeliaDataModule(L.LightningDataModule):
    """Downstream + diverse examples laid out by the schedule's step plan.

    ``task_records`` and ``diverse_records`` are chat records (``messages``); the number of diverse
    records used is ``diverse ratio x len(task_records)`` (the caller passes exactly that many).
    The step plan is global and seeded; under DDP each rank trains on its own shard of it.
    """

    def __init__(
        self,
        tokenizer: Any,
        task_records: list[dict[str, Any]],
        diverse_records: list[dict[str, Any]],
        eval_records: list[dict[str, Any]],
        schedule: Schedule,
        max_steps: int,
        batch_size: int,
        accumulate_grad_batches: int = 1,
        max_length: int = 512,
        on_overlength: str = "error",
        seed: int = 0,
        num_workers: int = 0,
        packing: bool = False,
        diverse_store_dir: Path | None = None,
        task_epochs: int | None = None,
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.records = {TASK: task_records, DIVERSE: diverse_records}
        self.eval_records = eval_records
        self.schedule = schedule
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.accumulate = accumulate_grad_batches
        self.max_length = max_length
        self.on_overlength = on_overlength
        self.seed = seed
        self.num_workers = num_workers
        self.packing = packing
        # with a folder, the diverse examples are tokenized into a memory-mapped Arrow file there
        self.diverse_store_dir = diverse_store_dir
        # the exposure protocol's passes over the task (None: the compute protocol, max_steps fixed)
        self.task_epochs = task_epochs
        self.examples: dict[int, Sequence[dict[str, list[int]]]] = {}
        self.global_plan: list[PlanItem] = []
        self.train_set: PlanDataset | None = None
        self.eval_set: ListDataset | None = None
        self._shard: tuple[int, int] | None = None

    def _encode(self, records: list[dict[str, Any]], what: str) -> list[dict[str, list[int]]]:
        return encode_all(self.tokenizer, records, self.max_length, self.on_overlength, what)

    def _diverse_examples(self) -> Sequence[dict[str, list[int]]]:
        """The tokenized diverse examples: memory-mapped from disk, or in memory without a store folder."""
        records = self.records[DIVERSE]
        if not records:
            return []
        if self.diverse_store_dir is None:
            return self._encode(records, "diverse data")
        path = build_store(
            records, self.tokenizer, self.max_length, self.on_overlength, self.diverse_store_dir
        )
        return DiverseStore(path)

    def build_plan(self, world_size: int) -> list[PlanItem]:
        """The global step plan: ``max_steps x accumulation x batch size x world size`` entries."""
        total = self.max_steps * self.accumulate * self.batch_size * world_size
        rng = random.Random(self.seed)
        n_task, n_diverse = len(self.examples[TASK]), len(self.examples[DIVERSE])
        if self.task_epochs is None:
            return self.schedule.plan(n_task, n_diverse, total, self.max_steps, rng)
        return self.schedule.exposure_plan(n_task, n_diverse, self.task_epochs, total, rng)

    def setup(self, stage: str | None = None) -> None:
        world_size, rank = (self.trainer.world_size, self.trainer.global_rank) if self.trainer else (1, 0)
        if self.train_set is not None and self._shard == (rank, world_size):
            return  # a spawned rank may receive a copy set up elsewhere: rebuild for this rank
        self._shard = (rank, world_size)
        self.examples = {TASK: self._encode(self.records[TASK], "downstream data")}
        self.examples[DIVERSE] = self._diverse_examples()
        self.global_plan = self.build_plan(world_size)
        self.train_set = PlanDataset(self.examples, rank_shard(self.global_plan, rank, world_size))
        eval_items = self._encode(self.eval_records, "eval data") if self.eval_records else []
        self.eval_set = ListDataset(eval_items[rank::world_size] or eval_items[:1])

    def _loader_kwargs(self, packed: bool = False) -> dict[str, Any]:
        pad_id = self.tokenizer.pad_token_id
        collate_fn = (
            partial(collate_packed, pad_id=pad_id, row_length=self.max_length)
            if packed
            else partial(collate, pad_id=pad_id)
        )
        return {"num_workers": self.num_workers, "collate_fn": collate_fn}

    def sources_trained(self, batches: int) -> torch.Tensor:
        """Examples per source (task, diverse) in this rank's first ``batches`` batches of the plan: what
        a run that has trained them has seen, on this rank (the counters a resumed run starts from)."""
        assert self.train_set is not None, "call setup() first"
        sources = [source for source, _ in self.train_set.plan[: batches * self.batch_size]]
        return torch.bincount(torch.tensor(sources, dtype=torch.long), minlength=2)[:2]

    def _batches_consumed(self) -> int:
        """Batches of this epoch that training has finished (Lightning's progress counter)."""
        return self.trainer.fit_loop.epoch_loop.batch_progress.current.processed if self.trainer else 0

    def train_dataloader(self) -> DataLoader:
        assert self.train_set is not None, "call setup() first"
        # no shuffling here: the plan is already shuffled, and its position is checkpointed
        return ResumableLoader(
            self.train_set, self.batch_size, self._batches_consumed, **self._loader_kwargs(self.packing)
        )

    def val_dataloader(self) -> DataLoader | list:
        assert self.eval_set is not None, "call setup() first"
        return (
            DataLoader(self.eval_set, batch_size=self.batch_size, **self._loader_kwargs())
            if len(self.eval_set)
            else []
        )


def build_datamodule(
    cfg: DictConfig,
    tokenizer: Any,
    task: list[Record],
    diverse: list[Record],
    eval_records: list[Record],
    schedule: Schedule,
    max_steps: int,
    task_epochs: int | None = None,
) -> DeliaDataModule:
    """The data module of ``cfg`` (``data.*``, the seed, the cache) for these downstream, diverse and
    validation records (the recipe picks the validation split).

    ``task_epochs``: the exposure protocol's passes over the task (None: the compute protocol's plan).
    """
    return DeliaDataModule(
        tokenizer,
        task_records=task,
        diverse_records=diverse,
        eval_records=eval_records,
        schedule=schedule,
        max_steps=max_steps,
        batch_size=cfg.data.batch_size,
        accumulate_grad_batches=cfg.trainer.accumulate_grad_batches,
        max_length=cfg.data.max_length,
        on_overlength=cfg.data.on_overlength,
        seed=cfg.seed,
        num_workers=cfg.data.num_workers,
        packing=bool(cfg.data.packing),
        diverse_store_dir=Path(cfg.paths.cache_dir) if cfg.data.get("stream_diverse", True) else None,
        task_epochs=task_epochs,
    )
