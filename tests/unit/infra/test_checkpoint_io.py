"""SafetensorsCheckpointIO: exact round trips without pickle, clear refusals, atomic writes, Lightning resume."""

from __future__ import annotations

import functools
import math
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import pytest
import safetensors
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch.utils.data import DataLoader, TensorDataset

from delia.infra.checkpoint_io import SafetensorsCheckpointIO, load_checkpoint_file
from delia.infra.errors import DeliaError


def assert_same(a: Any, b: Any, where: str = "checkpoint") -> None:
    """Deep equality that also checks types: tensors by value and dtype, nan equal to nan."""
    assert type(a) is type(b), f"{where}: {type(a)} != {type(b)}"
    if isinstance(a, torch.Tensor):
        assert a.dtype == b.dtype and a.shape == b.shape, where
        assert torch.equal(a, b) or (
            torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())
        )
    elif isinstance(a, dict):
        assert list(a) == list(b), f"{where}: keys {list(a)} != {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{where}[{key!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), where
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


def warmup(step: int, steps: int) -> float:
    return min(1.0, (step + 1) / steps)


def realistic_checkpoint() -> tuple[dict[str, Any], torch.nn.Module]:
    """A dict shaped like Lightning's, with a model, an AdamW state after one step and a LambdaLR."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(warmup, steps=4))
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    sched.step()
    checkpoint = {
        "epoch": 0,
        "global_step": 3,
        "pytorch-lightning_version": "2.6.0",
        "state_dict": model.state_dict(),
        "optimizer_states": [opt.state_dict()],
        "lr_schedulers": [sched.state_dict()],
        "loops": {"fit_loop": {"state_dict": {"combined_loader": [{"batches_consumed": 5}]}}},
        "callbacks": {
            "ModelCheckpoint{'monitor': None}": {
                "best_model_score": None,
                "kth_value": torch.tensor(float("inf")),
                "dirpath": "/x",
                "best_k_models": {},
            }
        },
        "rng": torch.get_rng_state(),
        "betas": (0.9, 0.999),
        "nan": float("nan"),
        "inf": [float("inf"), float("-inf")],
        "path": Path("/tmp/some/where"),
        "mixed_keys": {1: "a", "b": 2, (3, "c"): None},
        "marker_lookalike": {"__tensor__": "not a tensor"},
        "empty": torch.zeros(0, 4),
        "half": torch.arange(4, dtype=torch.bfloat16),
    }
    return checkpoint, model


def test_round_trip_keeps_structure_and_types(tmp_path: Path) -> None:
    checkpoint, model = realistic_checkpoint()
    path = tmp_path / "a" / "b" / "epoch=0.ckpt"  # the directory is created
    SafetensorsCheckpointIO().save_checkpoint(checkpoint, path)
    loaded = load_checkpoint_file(path)

    assert_same(checkpoint, loaded)
    assert isinstance(loaded["betas"], tuple)
    assert math.isnan(loaded["nan"])
    assert isinstance(loaded["path"], Path)
    state = loaded["optimizer_states"][0]["state"]
    assert list(state) == [0, 1] and all(isinstance(k, int) for k in state)
    assert loaded["optimizer_states"][0]["param_groups"][0]["params"] == [0, 1]
    assert isinstance(loaded["state_dict"], OrderedDict)
    assert loaded["state_dict"]._metadata == checkpoint["state_dict"]._metadata
    assert loaded["lr_schedulers"][0]["lr_lambdas"] == [{}]

    model2 = torch.nn.Linear(3, 2)
    model2.load_state_dict(loaded["state_dict"])
    opt2 = torch.optim.AdamW(model2.parameters(), lr=0.1)
    opt2.load_state_dict(loaded["optimizer_states"][0])
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, functools.partial(warmup, steps=4))
    sched2.load_state_dict(loaded["lr_schedulers"][0])
    assert sched2.get_last_lr() == pytest.approx([0.05])  # one param group, step 1 of 4
    assert torch.equal(model2.weight, model.weight)


def test_map_location_moves_tensors(tmp_path: Path) -> None:
    path = tmp_path / "x.ckpt"
    SafetensorsCheckpointIO().save_checkpoint({"w": torch.ones(2)}, path)
    loaded = SafetensorsCheckpointIO().load_checkpoint(path, map_location=torch.device("cpu"))
    assert loaded["w"].device.type == "cpu"
    assert SafetensorsCheckpointIO().load_checkpoint(path, map_location="cpu")["w"].device.type == "cpu"


def test_file_is_safetensors_without_pickle(tmp_path: Path) -> None:
    checkpoint, _ = realistic_checkpoint()
    path = tmp_path / "x.ckpt"
    SafetensorsCheckpointIO().save_checkpoint(checkpoint, path)

    data = path.read_bytes()
    assert not data.startswith(b"PK")
    assert not zipfile.is_zipfile(path)
    assert b"\x80\x02" not in data[:2] and b"\x80\x04" not in data[:2]  # no pickle protocol header
    with pytest.raises(Exception):  # noqa: B017 (whatever torch.load says, it cannot read this file)
        torch.load(path, weights_only=True)
    with safetensors.safe_open(str(path), "pt") as f:
        assert f.metadata()["format"] == "delia-ckpt-v1"
        assert len(list(f.keys())) > 5


def test_checkpoint_without_tensors(tmp_path: Path) -> None:
    path = tmp_path / "x.ckpt"
    SafetensorsCheckpointIO().save_checkpoint({"epoch": 1, "t": (None, True, 2.5)}, path)
    assert load_checkpoint_file(path) == {"epoch": 1, "t": (None, True, 2.5)}


def test_shared_storage_tensors(tmp_path: Path) -> None:
    base = torch.arange(12.0)
    tied = torch.nn.Parameter(torch.randn(4, 3))
    checkpoint = {
        "embed.weight": tied.detach(),
        "lm_head.weight": tied.detach(),  # a tied weight: two objects, one storage
        "same": [base, base],  # the same object twice
        "halves": [base[:6], base[6:]],  # disjoint views of one storage
        "transposed": tied.detach().t(),  # not contiguous
    }
    path = tmp_path / "x.ckpt"
    SafetensorsCheckpointIO().save_checkpoint(checkpoint, path)
    loaded = load_checkpoint_file(path)

    assert_same(
        {k: v for k, v in checkpoint.items() if k != "transposed"},
        {k: v for k, v in loaded.items() if k != "transposed"},
    )
    assert torch.equal(loaded["transposed"], tied.detach().t())
    assert loaded["same"][0] is loaded["same"][1]  # one tensor, as torch.save would give
    with safetensors.safe_open(str(path), "pt") as f:
        assert len(list(f.keys())) == 5  # tied and identical views are stored once


def test_unsupported_object_names_key_path(tmp_path: Path) -> None:
    io = SafetensorsCheckpointIO()
    path = tmp_path / "x.ckpt"
    with pytest.raises(
        TypeError, match=r"checkpoint\['callbacks'\]\['X'\]\['fn'\]: cannot store a <class 'function'>"
    ):
        io.save_checkpoint({"callbacks": {"X": {"fn": lambda: 1}}}, path)
    with pytest.raises(
        TypeError, match=r"checkpoint\['a'\]\[1\]: cannot store a <class 'object'> without pickle"
    ):
        io.save_checkpoint({"a": [1, object()]}, path)
    with pytest.raises(TypeError, match=r"checkpoint\['d'\]\[2\]"):
        io.save_checkpoint({"d": {2: torch.float32}}, path)
    cycle: list[Any] = []
    cycle.append(cycle)
    with pytest.raises(TypeError, match="contains itself"):
        io.save_checkpoint({"c": cycle}, path)
    with pytest.raises(TypeError, match="storage_options"):
        io.save_checkpoint({}, path, storage_options={"x": 1})
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_pickle_checkpoint_refused_unless_allowed(tmp_path: Path) -> None:
    path = tmp_path / "old.ckpt"
    torch.save({"a": torch.ones(2)}, path)
    with pytest.raises(DeliaError, match="allow_pickle") as info:
        SafetensorsCheckpointIO().load_checkpoint(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    with pytest.raises(DeliaError, match="allow_pickle"):
        load_checkpoint_file(path)

    loaded = SafetensorsCheckpointIO(allow_pickle=True).load_checkpoint(path)
    assert torch.equal(loaded["a"], torch.ones(2))


def test_foreign_safetensors_file_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.ones(2)}, str(path))
    with pytest.raises(DeliaError, match="not a delia checkpoint"):
        load_checkpoint_file(path)


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.01, 12, 4])
def test_truncated_file_raises(tmp_path: Path, keep: float) -> None:
    """A cut file is reported as damaged (never as a pickle), however much of it is left."""
    checkpoint, _ = realistic_checkpoint()
    path = tmp_path / "x.ckpt"
    SafetensorsCheckpointIO().save_checkpoint(checkpoint, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep) if keep < 1 else int(keep)])
    for io in (SafetensorsCheckpointIO(), SafetensorsCheckpointIO(allow_pickle=True)):
        with pytest.raises(DeliaError, match="unreadable checkpoint") as info:
            io.load_checkpoint(path)
        assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_missing_and_empty_files_raise(tmp_path: Path) -> None:
    with pytest.raises(DeliaError, match="checkpoint not found"):
        load_checkpoint_file(tmp_path / "nope.ckpt")
    (tmp_path / "empty.ckpt").write_bytes(b"")
    with pytest.raises(DeliaError, match="unreadable checkpoint"):
        load_checkpoint_file(tmp_path / "empty.ckpt")
    with pytest.raises(DeliaError, match="unreadable"):
        SafetensorsCheckpointIO(allow_pickle=True).load_checkpoint(tmp_path / "empty.ckpt")


def test_save_is_atomic_and_remove(tmp_path: Path) -> None:
    io = SafetensorsCheckpointIO()
    path = tmp_path / "last.ckpt"
    io.save_checkpoint({"v": torch.ones(3)}, path)
    io.save_checkpoint({"v": torch.zeros(3)}, path)  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.equal(load_checkpoint_file(path)["v"], torch.zeros(3))

    with pytest.raises(TypeError):  # a failed save leaves the previous checkpoint and no temporary file
        io.save_checkpoint({"v": torch.ones(3), "bad": object()}, path)
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]
    assert torch.equal(load_checkpoint_file(path)["v"], torch.zeros(3))

    io.remove_checkpoint(path)
    io.remove_checkpoint(path)  # already gone: no error
    assert list(tmp_path.iterdir()) == []


class TinyModule(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(4, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        x, y = batch
        return torch.nn.functional.mse_loss(self.layer(x), y)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1, momentum=0.9)


def make_trainer(tmp_path: Path, max_steps: int) -> pl.Trainer:
    return pl.Trainer(
        max_steps=max_steps,
        plugins=[SafetensorsCheckpointIO()],
        enable_progress_bar=False,
        logger=False,
        enable_model_summary=False,
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        callbacks=[
            ModelCheckpoint(dirpath=tmp_path / "ck", save_last=True, every_n_train_steps=1, save_top_k=0)
        ],
    )


def test_lightning_trainer_saves_and_resumes(tmp_path: Path) -> None:
    torch.manual_seed(0)
    data = TensorDataset(torch.randn(16, 4), torch.randn(16, 1))
    loader = DataLoader(data, batch_size=4)

    trainer = make_trainer(tmp_path, max_steps=3)
    trainer.fit(TinyModule(), loader)
    last = tmp_path / "ck" / "last.ckpt"
    assert not zipfile.is_zipfile(last)
    checkpoint = load_checkpoint_file(last)
    assert checkpoint["global_step"] == 3
    assert set(checkpoint["state_dict"]) == {"layer.weight", "layer.bias"}
    assert checkpoint["optimizer_states"][0]["state"][0]["momentum_buffer"].shape == (1, 4)

    module2 = TinyModule()
    trainer2 = make_trainer(tmp_path, max_steps=5)
    trainer2.fit(module2, loader, ckpt_path=last)
    assert trainer2.global_step == 5
    assert load_checkpoint_file(last)["global_step"] == 5
    assert [p.name for p in (tmp_path / "ck").iterdir()] == ["last.ckpt"]
