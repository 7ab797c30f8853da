"""The LightningModule: one training step of DELIA, with the task and diverse losses kept apart."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F

from delia.data.mixing import DIVERSE, TASK
from delia.data.tokenize import IGNORE_INDEX
from delia.infra.errors import DeliaError
from delia.model.cross_entropy import label_cross_entropy
from delia.model.packed_attention import register as register_packed_attention
from delia.schedule import Schedule, SourceLosses

SEEN_KEYS = ("train/seen_task_examples", "train/seen_diverse_examples")


class NonFiniteLoss(DeliaError):
    """A NaN/inf loss: the run stops, naming the step and the batch source; the last checkpoint is kept."""

    def __init__(self, step: int, losses: SourceLosses, trainer: Any) -> None:
        parts = {"task": losses.task, "diverse": losses.diverse}
        bad = [name for name, value in parts.items() if not torch.isfinite(value)] or ["combined"]
        ckpt = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none written yet"
        super().__init__(
            f"non-finite loss at step {step} in the {' and '.join(bad)} part of the batch "
            f"(loss_task={float(losses.task):.4g}, loss_diverse={float(losses.diverse):.4g}); "
            f"last good checkpoint: {ckpt}; lower optimizer.lr or check that data"
        )


def per_token_losses(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Next-token loss at every position and the mask of the positions that count (assistant tokens).

    The vocabulary projection runs only where a label is: prompt and padding positions never get
    logits (for a short reply after a long prompt that is most of the positions, and the full-vocabulary
    logits were most of the step's memory). A packed batch (delia.data.packing) has ``position_ids``
    restarting per example and no ``attention_mask``: transformers then keeps attention inside each example.
    """
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "position_ids") if k in batch}
    targets = batch["labels"][:, 1:]
    mask = targets != IGNORE_INDEX
    parts = decoder_and_head(model)
    if parts is None:  # a model we cannot split: full logits
        logits = model(**inputs, use_cache=False).logits[:, :-1]
        per_token = F.cross_entropy(
            logits.float().transpose(1, 2), targets, ignore_index=IGNORE_INDEX, reduction="none"
        )
        return per_token, mask
    decoder, head = parts
    # use_cache=False: a cache would switch off the packed-sequence mask
    hidden = decoder(**inputs, use_cache=False).last_hidden_state[:, :-1]
    per_token = torch.zeros(targets.shape, dtype=torch.float32, device=targets.device)
    per_token[mask] = label_cross_entropy(head(hidden[mask]), targets[mask])
    return per_token, mask


def decoder_and_head(model: Any) -> tuple[Any, Any] | None:
    """The decoder stack and the output projection of a (peft-wrapped) causal LM, when logits are plain.

    Models that transform the logits (soft-capping, scaling) go through their own forward instead.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    config = getattr(base, "config", None)
    if config is None or not hasattr(base, "get_decoder") or base.get_output_embeddings() is None:
        return None
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    if getattr(text, "final_logit_softcapping", None) or getattr(text, "logit_scale", None) not in (
        None,
        1.0,
    ):
        return None
    return base.get_decoder(), base.get_output_embeddings()


def token_losses(model: Any, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row summed next-token loss over assistant tokens, and the number of those tokens."""
    per_token, mask = per_token_losses(model, batch)
    return (per_token * mask).sum(dim=1), mask.sum(dim=1)


def source_losses(model: Any, batch: dict[str, torch.Tensor]) -> SourceLosses:
    """Split the batch's token losses by source (downstream task vs diverse data), token by token."""
    per_token, mask = per_token_losses(model, batch)
    if "token_source" in batch:  # packed rows mix sources
        source = batch["token_source"][:, 1:]
    else:
        source = batch["source"][:, None].expand_as(mask)
    is_task, is_diverse = mask & (source == TASK), mask & (source == DIVERSE)
    return SourceLosses(
        task_sum=(per_token * is_task).sum(),
        task_tokens=is_task.sum(),
        diverse_sum=(per_token * is_diverse).sum(),
        diverse_tokens=is_diverse.sum(),
    )


class DeliaModule(L.LightningModule):
    """Trains a peft-wrapped causal LM on the DELIA mix; the schedule combines the two losses."""

    def __init__(
        self,
        model: Any,
        schedule: Schedule,
        optimizer: Callable[..., torch.optim.Optimizer],
        lr_scheduler: Callable[..., Any] | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.schedule = schedule
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        self.strict_loading = False  # checkpoints hold only the trainable weights
        self._rng_to_restore: torch.Tensor | None = None
        # examples trained on per source (task, diverse) by this rank; not a buffer, which DDP would
        # overwrite with rank 0's values. Summed over ranks into callback_metrics at the end; a resumed run
        # starts from what the checkpoint's steps trained (see on_train_start).
        self.sources_seen = torch.zeros(2, dtype=torch.long)

    def setup(self, stage: str) -> None:
        # a spawned process (ddp_spawn) unpickles a model set to delia_sdpa but starts without its registration
        register_packed_attention()

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        losses = source_losses(self.model, batch)
        max_steps = max(self.trainer.max_steps, 1)
        loss = self.schedule.combine(losses, self.global_step, max_steps)
        if not torch.isfinite(loss):
            raise NonFiniteLoss(self.global_step, losses, self.trainer)
        size = batch["input_ids"].shape[0]
        self.sources_seen += torch.bincount(batch["source"], minlength=2).cpu()
        self.log("train/loss", loss, prog_bar=True, batch_size=size)
        if losses.task_tokens > 0:
            self.log("train/loss_task", losses.task, prog_bar=True, batch_size=size)
        if losses.diverse_tokens > 0:
            self.log("train/loss_diverse", losses.diverse, batch_size=size)
        self.log("train/diverse_weight", self.schedule.weight(self.global_step, max_steps), batch_size=size)
        self.log("train/task_share", (batch["source"] == TASK).float().mean(), batch_size=size)
        return loss

    def on_train_end(self) -> None:
        """Publish the per-source counts of all ranks (callback_metrics also reach a ddp_spawn parent)."""
        seen = self.sources_seen.to(self.device)
        if self.trainer.world_size > 1:
            seen = self.all_gather(seen).sum(dim=0)
        metrics = self.trainer.callback_metrics
        metrics[SEEN_KEYS[0]], metrics[SEEN_KEYS[1]] = seen.float().cpu()

    def trained_before(self) -> torch.Tensor:
        """Examples per source that this rank's plan trained in the steps already taken (``global_step``)."""
        batches = self.trainer.global_step * self.trainer.accumulate_grad_batches
        datamodule = getattr(self.trainer, "datamodule", None)
        if batches == 0 or not hasattr(datamodule, "sources_trained"):
            return torch.zeros(2, dtype=torch.long)
        return datamodule.sources_trained(batches)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        sums, counts = token_losses(self.model, batch)
        # summed over the ranks' shards of the eval split (each rank holds its own examples)
        self.log(
            "val/loss",
            sums.sum() / counts.sum().clamp(min=1),
            prog_bar=True,
            batch_size=int(counts.sum()),
            sync_dist=True,
        )

    def configure_optimizers(self) -> Any:
        params = [p for p in self.model.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        if self.lr_scheduler_factory is None:
            return optimizer
        scheduler = self.lr_scheduler_factory(optimizer)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Keep only trainable weights (LoRA, new-token rows): the frozen base is not duplicated.

        The torch RNG state goes along (LoRA dropout draws from it) so that a resumed run continues
        exactly as an uninterrupted one would.
        """
        trainable = {f"model.{name}" for name, p in self.model.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        checkpoint["delia_rng"] = torch.get_rng_state()
        checkpoint["delia_sources_seen"] = self.sources_seen.tolist()  # this rank's, for the record

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._rng_to_restore = checkpoint.get("delia_rng")

    def on_train_start(self) -> None:
        # created here, in the training process: a tensor made in __init__ is shared memory after a spawn.
        # A resumed run counts what the checkpoint's steps trained: the rank's plan up to that step (the
        # plan is seeded and its position is in the checkpoint), exactly what an unbroken run has counted.
        self.sources_seen = self.trained_before()
        if self._rng_to_restore is not None:  # after all setup, right before the first resumed step
            torch.set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
