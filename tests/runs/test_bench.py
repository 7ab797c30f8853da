"""delia-bench runs on the tiny model and writes its table; its FLOP and token accounting is right.

No timing is asserted here: benchmarks report ratios, tests only check that they are measured.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.conftest import TINY


@pytest.mark.slow
def test_delia_bench_runs_on_the_tiny_model_and_writes_its_table(tmp_path: Path) -> None:
    out = tmp_path / "bench"
    proc = subprocess.run(
        [
            "delia-bench",
            *TINY,
            "bench.steps=1",
            "bench.rounds=2",
            "bench.recipes=[ours,trl_release]",  # every recipe trains: tests/unit/tools/test_bench.py
            "bench.workloads=[mixed]",  # the task workload is the sampling part's data below
            "bench.mixed_rows=8",
            "bench.mixed_max_length=64",
            "bench.memory_ratios=[1,10]",
            "bench.sample_prompts=4",
            "bench.sample_max_new_tokens=8",
            "bench.samplers=[transformers,llamacpp:q8_0]",
            "bench.default_workload_samplers=[transformers,torch_engine:float32,openvino]",  # no GGUF here
            "bench.matmul_size=256",
            f"hydra.run.dir={out}",
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads((out / "bench.json").read_text())
    recipes = {"ours", "trl_release"}
    assert set(results["train"]) == {"mixed"}
    for workload in ("mixed",):
        assert set(results["train"][workload]) == {"32-true", "bf16-mixed"}
        for precision in ("32-true", "bf16-mixed"):
            cells = results["train"][workload][precision]
            assert set(cells) == recipes
            assert all(
                len(c["per_round"]) == 2 and c["min"] <= c["median"] <= c["max"] for c in cells.values()
            )
            assert all(
                len(t["seconds"]) == 1 and t["tokens"][0] > 0 for c in cells.values() for t in c["raw"]
            )
            ratio = results["train_ratios"][f"{workload}/{precision}/ours_vs_trl_release"]
            assert ratio["median"] > 0 and ratio["ranking"]
            mfu = results["mfu"][f"{workload}/{precision}"]
            assert mfu["median"] > 0 and mfu["dtype"] == (
                "bfloat16" if precision == "bf16-mixed" else "float32"
            )
    assert set(results["sampling_tokens_per_s"]) == {"sample/transformers", "sample/llamacpp_q8_0"}
    assert all(v > 0 for v in results["sampling_tokens_per_s"].values())
    check = results["sampling_logprob"]["llamacpp_q8_0"]
    assert check["mean"] < 0 and check["se_of_difference"] > 0 and "minus_transformers" in check
    workload = results["sampling_workload"]
    assert workload["prompts"] == 4 and workload["prompt_tokens_max"] >= workload["prompt_tokens_mean"] > 0
    assert 0 < results["sampling_reply_tokens"]["transformers"] <= workload["max_new_tokens"] + 1
    default_run = results["sampling_default_workload"]  # debug=fast: 8 examples at ratio 1, 8 new tokens
    assert default_run["prompts"] == 8 and default_run["max_new_tokens"] == 8
    assert set(results["sampling_default_tokens_per_s"]) == {
        "sample/transformers",
        "sample/torch_engine_float32",
    }
    assert "minus_transformers" in results["sampling_default_logprob"]["torch_engine_float32"]
    assert set(results["sampling_default_skipped"]) == {"openvino"}  # reported, and the others still ran
    assert results["ratios"]["default_run/sample/torch_engine_float32_vs_transformers"] > 0
    assert results["machine"]["cpu_family"] is not None
    assert set(results["peak_rss_bytes"]) == {"ratio_1", "ratio_10", "ratio_10_in_memory"}
    assert results["ratios"]["sample/llamacpp_q8_0_vs_transformers"] > 0
    assert "train/mixed/32-true/ours" in proc.stdout and "delia-bench: wrote" in proc.stdout
    assert "default_run/sample/torch_engine_float32" in proc.stdout
