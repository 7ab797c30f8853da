"""diverse.sampler=openvino: the one-line refusals (no file, a missing file, the extra not installed), and
OpenVINO GenAI sampling the embedded model's own GGUF file, following the seeds (the extra installed)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from delia.diverse import openvino, samplers
from delia.infra.errors import DeliaError
from delia.model.sources import gguf_location
from tests.conftest import compose_train

needs_openvino = pytest.mark.skipif(
    importlib.util.find_spec("openvino_genai") is None,
    reason='the openvino extra (pip install -e ".[openvino]")',
)
PROMPTS = [
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
]


def test_no_gguf_file_is_one_line_naming_the_option() -> None:
    cfg = compose_train(["diverse.sampler=openvino"]).diverse
    with pytest.raises(
        DeliaError, match=r"^diverse.sampler=openvino samples a GGUF file: set diverse.openvino.gguf="
    ):
        openvino.options(cfg)


def test_a_missing_gguf_file_is_one_line(tmp_path: Path) -> None:
    cfg = OmegaConf.merge(compose_train([]).diverse, {"openvino": {"gguf": str(tmp_path / "no.gguf")}})
    with pytest.raises(DeliaError, match=r"diverse.openvino.gguf=.*no.gguf: file not found"):
        openvino.options(cfg)


def test_without_the_extra_the_refusal_gives_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "openvino_genai" else real(name, *a)
    )
    with pytest.raises(DeliaError, match=r'needs openvino-genai .* run `pip install -e "\.\[openvino\]"`'):
        samplers.check_installed("openvino", "diverse.sampler")


@needs_openvino
def test_openvino_samples_the_embedded_gguf_and_follows_the_seeds(
    session_cache: Path, tmp_path: Path
) -> None:
    from transformers import AutoTokenizer

    from delia.model import base_model_folder

    cfg = compose_train([])
    diverse = OmegaConf.merge(
        cfg.diverse,
        {"sampler": "openvino", "max_new_tokens": 12, "openvino": {"gguf": str(gguf_location(cfg.model))}},
    )
    tok = AutoTokenizer.from_pretrained(base_model_folder(cfg.model, session_cache))
    sampler = samplers.make_sampler(None, tok, diverse, None, tmp_path, {"name": "smollm2_135m"})
    try:
        first = sampler.generate(PROMPTS, seed=5)
        again = sampler.generate(PROMPTS, seed=5)
        other = sampler.generate(PROMPTS, seed=50)
    finally:
        sampler.close()
    assert len(first) == len(PROMPTS) and all(r.finish in ("stop", "length") and r.text for r in first)
    assert again == first and other != first
