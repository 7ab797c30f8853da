"""trainer.precision=auto: bfloat16 (mixed) only where the hardware computes it, float32 elsewhere; any
other value is Lightning's and stays as given."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from delia.infra import precision
from delia.infra.precision import apply_precision, resolve_precision


@pytest.mark.parametrize(
    ("accelerator", "cpu_bf16", "gpu", "gpu_bf16", "expected"),
    [
        ("cpu", True, False, False, "bf16-mixed"),  # AVX512-BF16 / AMX
        ("cpu", False, False, False, "32-true"),  # AVX2 only: bfloat16 would be emulated
        ("auto", False, True, True, "bf16-mixed"),  # a GPU that computes bfloat16
        ("gpu", True, True, False, "32-true"),  # a GPU that does not, whatever the CPU does
        ("auto", True, False, False, "bf16-mixed"),
    ],
)
def test_auto_follows_what_the_hardware_computes(
    monkeypatch, accelerator: str, cpu_bf16: bool, gpu: bool, gpu_bf16: bool, expected: str
) -> None:
    monkeypatch.setattr(precision, "cpu_computes_bfloat16", lambda: cpu_bf16)
    monkeypatch.setattr(precision, "gpu_computes_bfloat16", lambda: gpu_bf16)
    monkeypatch.setattr(precision.torch.cuda, "is_available", lambda: gpu)
    cfg = OmegaConf.create({"trainer": {"accelerator": accelerator, "precision": "auto"}})
    assert resolve_precision(cfg.trainer) == expected
    assert apply_precision(cfg) == expected and cfg.trainer.precision == expected


def test_a_precision_named_explicitly_is_kept(monkeypatch) -> None:
    monkeypatch.setattr(precision, "cpu_computes_bfloat16", lambda: True)
    for given in ("32-true", "bf16-mixed", "16-mixed"):
        assert resolve_precision(OmegaConf.create({"accelerator": "cpu", "precision": given})) == given
