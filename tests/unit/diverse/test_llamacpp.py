"""diverse.sampler=llamacpp: exact settings, stopping, determinism, the converted model, the cache, resume."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from delia.config import validate
from delia.diverse import gguf_export, llamacpp
from delia.diverse.llamacpp import LlamaCppEngine, converted_model
from delia.infra.errors import DeliaError
from delia.model.generate import end_of_turn_ids
from tests.conftest import TINY, compose_train

pytest.importorskip("llama_cpp")

MODEL_ID = {"name": "tiny_random"}
PROMPTS = [
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nName a colour.<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nTell me a story about a fox.<|im_end|>\n<|im_start|>assistant\n",
]


def diverse_cfg(**overrides):
    cfg = compose_train([*TINY, "diverse.sampler=llamacpp"]).diverse
    return OmegaConf.merge(cfg, overrides)


def settings(max_new: int, stop_ids: list[int], top_p: float = 0.95) -> dict:
    return {"temperature": 0.7, "top_p": top_p, "max_new_tokens": max_new, "stop_ids": stop_ids}


@pytest.fixture
def tiny_engine(tiny_model, tmp_path: Path):
    model, tok = tiny_model
    gguf = converted_model(model, tmp_path, MODEL_ID, "f32", "test")
    engine = LlamaCppEngine(gguf, workers=2, slots=2)
    yield engine, model, tok
    engine.close()


def run(engine, tok, prompts, seeds, conf):
    ids = [tok.encode(p, add_special_tokens=False) for p in prompts]
    return {k: (new, stopped) for k, new, stopped in engine.run(ids, seeds, conf)}


def test_every_prompt_gets_one_reply_of_at_most_max_new_tokens(tiny_engine) -> None:
    engine, _, tok = tiny_engine
    prompts = PROMPTS * 3  # more prompts than the 2 workers x 2 slots: slots are reused
    out = run(engine, tok, prompts, list(range(len(prompts))), settings(7, end_of_turn_ids(tok)))
    assert sorted(out) == list(range(len(prompts)))
    for new, stopped in out.values():
        assert 1 <= len(new) <= 7
        assert stopped == (new[-1] in end_of_turn_ids(tok))
        assert stopped or len(new) == 7


def test_a_reply_stops_at_the_first_stop_token(tiny_engine) -> None:
    engine, _, tok = tiny_engine
    stops = list(range(0, 49152, 2))  # half the vocabulary: a random model hits one within a few tokens
    out = run(engine, tok, PROMPTS, [0, 1, 2], settings(50, stops))
    for new, stopped in out.values():
        assert stopped and new[-1] in stops
        assert not any(t in stops for t in new[:-1])


def test_same_seeds_give_the_same_replies_and_other_seeds_others(tiny_engine) -> None:
    engine, _, tok = tiny_engine
    conf = settings(12, end_of_turn_ids(tok))
    first = run(engine, tok, PROMPTS, [5, 6, 7], conf)
    assert run(engine, tok, PROMPTS, [5, 6, 7], conf) == first
    assert run(engine, tok, PROMPTS, [8, 9, 10], conf) != first


@torch.inference_mode()
def test_the_converted_model_computes_what_transformers_computes(tiny_engine) -> None:
    """A tiny top-p keeps the most likely token only: greedy decoding, which must match transformers'."""
    engine, model, tok = tiny_engine
    out = run(engine, tok, PROMPTS, [0, 1, 2], settings(8, [], top_p=1e-6))
    for k, prompt in enumerate(PROMPTS):
        ids = torch.tensor([tok.encode(prompt, add_special_tokens=False)])
        greedy = model.generate(
            ids, do_sample=False, max_new_tokens=8, pad_token_id=tok.pad_token_id, eos_token_id=None
        )
        assert out[k][0] == greedy[0, ids.shape[1] :].tolist()


def test_the_converted_model_is_reused_and_keyed_by_compute_type(
    tiny_model, tmp_path: Path, monkeypatch
) -> None:
    model, _ = tiny_model
    first = converted_model(model, tmp_path, MODEL_ID, "q8_0", "1.0")
    monkeypatch.setattr(llamacpp, "export_gguf", lambda *a: pytest.fail("converted again"))
    assert converted_model(model, tmp_path, MODEL_ID, "q8_0", "1.0") == first
    monkeypatch.undo()
    others = {
        converted_model(model, tmp_path, MODEL_ID, "f16", "1.0"),
        converted_model(model, tmp_path, MODEL_ID, "q8_0", "2.0"),
    }
    others |= {converted_model(model, tmp_path, {"name": "other"}, "q8_0", "1.0")}
    assert first not in others and len(others) == 3


@pytest.mark.parametrize("compute_type", gguf_export.COMPUTE_TYPES)
def test_the_config_accepts_every_compute_type_the_exporter_writes(compute_type: str) -> None:
    validate(
        compose_train([*TINY, "diverse.sampler=llamacpp", f"diverse.llamacpp.compute_type={compute_type}"])
    )


def test_the_config_names_the_compute_types_when_one_is_unknown() -> None:
    with pytest.raises(DeliaError, match="compute_type"):
        validate(compose_train([*TINY, "diverse.sampler=llamacpp", "diverse.llamacpp.compute_type=int4"]))


def test_a_missing_engine_names_the_fix(monkeypatch) -> None:
    def no_module(name):
        raise ImportError(name)

    monkeypatch.setattr(llamacpp.importlib, "import_module", no_module)
    with pytest.raises(DeliaError, match=r"pip install -e .*\[llamacpp\].*diverse.sampler=torch_engine"):
        llamacpp.import_llama_cpp()


@pytest.mark.slow
def test_q4_1_of_the_embedded_model_is_the_embedded_gguf_itself(tmp_path: Path) -> None:
    """Our float32 copy is the embedded Q4_1 file de-quantized; written back at q4_1 it is that file's weights."""
    import gguf

    from delia.model import load_base
    from delia.model.sources import gguf_location

    cfg = compose_train([])
    model, _ = load_base(cfg.model, cfg.paths.cache_dir)
    gguf_export.export_gguf(model, tmp_path / "m.gguf", "q4_1")
    ours = {t.name: t for t in gguf.GGUFReader(tmp_path / "m.gguf").tensors}
    embedded = gguf.GGUFReader(gguf_location(cfg.model)).tensors
    assert len(ours) == len(embedded)
    for tensor in embedded:
        assert ours[tensor.name].tensor_type == tensor.tensor_type
        assert np.array_equal(
            np.asarray(ours[tensor.name].data).view(np.uint8), np.asarray(tensor.data).view(np.uint8)
        )


def test_bf16_holds_the_weights_rounded_as_torch_rounds_them_and_samples(tiny_model, tmp_path: Path) -> None:
    import gguf

    model, tok = tiny_model
    path = converted_model(model, tmp_path, MODEL_ID, "bf16", "test")
    stored = {t.name: t for t in gguf.GGUFReader(path).tensors}
    for name, weight in model.state_dict().items():
        if name == "lm_head.weight" or weight.ndim != 2:
            continue  # tied to the embedding; norms stay float32
        tensor = stored[gguf_export.gguf_name(name)]
        assert tensor.tensor_type == gguf.GGMLQuantizationType.BF16
        as_f32 = (np.asarray(tensor.data).view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        expected = weight.to(torch.bfloat16).float()
        if name.endswith(("q_proj.weight", "k_proj.weight")):  # rows in GGUF's rotary order
            heads = model.config.num_attention_heads if "q_proj" in name else model.config.num_key_value_heads
            expected = torch.from_numpy(gguf_export.rotary_interleave(expected.numpy(), heads))
        assert np.array_equal(as_f32.reshape(expected.shape), expected.numpy()), name
    engine = LlamaCppEngine(path, workers=1, slots=2)
    try:
        out = run(engine, tok, PROMPTS, [0, 1, 2], settings(6, end_of_turn_ids(tok)))
    finally:
        engine.close()
    assert sorted(out) == [0, 1, 2] and all(1 <= len(new) <= 6 for new, _ in out.values())
