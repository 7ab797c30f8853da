"""The real embedded SmolLM2-135M-Instruct: converted from its GGUF, loads, and generates (slow; runs in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from delia.data.tokenize import generation_prompt
from delia.eval.evaluate import generate_replies
from delia.model import load_base
from tests.conftest import compose_train


@pytest.mark.slow
def test_embedded_smollm2_loads_and_generates(session_cache: Path) -> None:
    model, tok = load_base(compose_train([]).model, session_cache)
    assert model.config.model_type == "llama" and model.config.tie_word_embeddings
    assert not getattr(model, "is_quantized", False) and not hasattr(model.config, "quantization_config")
    assert sum(p.numel() for p in model.parameters()) > 100_000_000
    prompts = [generation_prompt(tok, [{"role": "user", "content": "What is the capital of France?"}])]
    [reply] = generate_replies(model, tok, prompts, max_new_tokens=20, batch_size=1)
    assert "Paris" in reply
