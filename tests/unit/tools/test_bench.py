"""delia-bench runs on the tiny model and writes its table; its FLOP and token accounting is right.

No timing is asserted here: benchmarks report ratios, tests only check that they are measured.
"""

from __future__ import annotations

import pytest
import torch
from omegaconf import OmegaConf

from delia.baselines import prompted_task
from delia.data.datamodule import collate
from delia.data.packing import collate_packed
from delia.infra.errors import DeliaError
from delia.tools import bench
from delia.tools.bench import rounds
from delia.tools.bench.flops import Timing


def _items(lengths: list[int]) -> list[dict]:
    return [
        {"input_ids": list(range(1, n + 1)), "labels": list(range(1, n + 1)), "source": 0} for n in lengths
    ]


def test_example_lengths_of_padded_and_packed_batches() -> None:
    lengths = [5, 3, 7, 2]
    assert bench.example_lengths(collate(_items(lengths), pad_id=0)) == lengths
    packed = bench.example_lengths(collate_packed(_items(lengths), pad_id=0, row_length=10))
    assert sorted(packed) == sorted(lengths)


def test_step_flops_by_hand() -> None:
    # 2 examples of 10 and 20 tokens, 1000 matmul weights, 2 layers of width 8, no recomputation:
    # dense 2 passes x 2 x 1000 x 30 = 120000; attention 3 x 2 x (100 + 400) x 8 x 2 = 48000
    assert bench.step_flops([10, 20], 1000, 2, 8, recompute=False) == 168000.0
    # gradient checkpointing adds one forward: dense 3 x 60000, attention 4 x 16000
    assert bench.step_flops([10, 20], 1000, 2, 8, recompute=True) == 244000.0


def test_matmul_params_count_every_linear() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2, bias=False))
    assert bench.matmul_params(model) == 12 + 6
    assert bench.matmul_peak(64, repeats=2) > 0


def test_counting_collator_counts_input_tokens_and_drops_keys() -> None:
    from functools import partial

    counter = bench.CountingCollator(partial(collate, pad_id=0), drop=("source",))
    batch = counter(_items([4, 6]))
    assert counter.tokens == [10] and "source" not in batch and batch["input_ids"].shape == (2, 6)


def _timing(tokens_per_s: float, flops_per_s: float = 1.0) -> Timing:
    return Timing(seconds=[1.0], tokens=[int(tokens_per_s)], flops=[flops_per_s])


def test_ratios_are_taken_per_round_and_ranked_only_when_every_round_agrees(monkeypatch) -> None:
    monkeypatch.setattr(
        rounds, "matmul_peak", lambda size, dtype="float32": 10.0 if dtype == "float32" else 20.0
    )
    cfg = OmegaConf.create({"bench": {"precisions": ["32-true", "bf16-mixed"], "matmul_size": 8}})
    timings = {
        ("task", "32-true", "ours"): [_timing(300, 5.0), _timing(200, 4.0), _timing(310, 6.0)],
        ("task", "32-true", "trl_release"): [_timing(100), _timing(100), _timing(100)],
        ("task", "32-true", "hf_trainer"): [_timing(250), _timing(250), _timing(250)],
        ("task", "bf16-mixed", "ours"): [_timing(600, 8.0), _timing(400, 8.0), _timing(620, 8.0)],
    }
    out = rounds.summarise(timings, cfg)
    release = out["train_ratios"]["task/32-true/ours_vs_trl_release"]
    assert release["per_round"] == [3.0, 2.0, 3.1] and release["median"] == 3.0
    assert release["ranking"] == "ahead"
    trainer = out["train_ratios"]["task/32-true/ours_vs_hf_trainer"]  # 1.2, 0.8, 1.24: the rounds disagree
    assert trainer["min"] < 1 < trainer["max"] and trainer["ranking"].startswith("not a ranking")
    assert out["train_ratios"]["task/ours_bf16_vs_ours_fp32"]["per_round"] == [2.0, 2.0, 2.0]
    assert out["train"]["task"]["32-true"]["ours"]["median"] == 300.0
    assert out["mfu"]["task/32-true"]["per_round"] == [0.5, 0.4, 0.6]  # against the float32 peak
    assert out["mfu"]["task/bf16-mixed"]["median"] == 0.4  # against the bfloat16 peak


def test_the_mixed_workload_has_replies_of_20_to_320_words() -> None:
    from delia.tools.bench.training import mixed_workload

    cfg = OmegaConf.create({"seed": 1, "bench": {"mixed_rows": 60}})
    data = mixed_workload(cfg)
    lengths = [len(r["messages"][-1]["content"].split()) for r in data.task]
    assert (
        len(lengths) == 60
        and min(lengths) >= 20
        and max(lengths) <= 320
        and max(lengths) - min(lengths) > 150
    )
    assert mixed_workload(cfg).task == data.task and not data.diverse


def test_the_vocabulary_projection_counts_only_at_label_positions() -> None:
    # 100 of the 1000 weights are the head; 30 tokens, 5 of them labels:
    # body 2 passes x 2 x 900 x 30 = 108000; head 4 x 100 x 5 = 2000; attention as above 48000
    assert bench.step_flops([10, 20], 1000, 2, 8, False, head_params=100, head_tokens=5) == 158000.0


def test_peak_rss_is_this_process_peak() -> None:
    import resource

    peak = bench.peak_rss_bytes()
    assert 0 < peak <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 * 1.01


def test_every_recipe_trains_and_counts_its_useful_tokens(session_cache) -> None:
    from delia.tools.bench.training import RECIPES, mixed_workload, time_recipe
    from tests.conftest import TINY, compose_train

    cfg = compose_train([*TINY, "bench.steps=1", "bench.warmup=0", "bench.mixed_rows=6"], name="bench")
    cfg.data.max_length = 64
    data = mixed_workload(cfg)
    for name in RECIPES:
        timing = time_recipe(name, cfg, data, "32-true")
        assert len(timing.seconds) == 1 and timing.tokens[0] > 0, name


def test_the_machine_is_named_by_its_cpu_model(tmp_path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC 9R14\nflags\t: avx2\n"
    )
    assert bench.cpu_model(str(cpuinfo)) == "AMD EPYC 9R14"
    assert bench.cpu_model(str(tmp_path / "missing")) != ""  # the architecture, where cpuinfo is unreadable
    assert set(bench.machine()) >= {"cpu", "cpu_computes_bfloat16", "cores", "torch_threads", "torch"}


def test_the_machine_tells_apart_cpus_that_share_a_name(tmp_path) -> None:
    first = "processor\t: 0\nmodel name\t: AMD EPYC\ncpu family\t: {}\nmodel\t\t: {}\nflags\t: {}\n\n"
    second = "processor\t: 1\nmodel name\t: AMD EPYC\ncpu family\t: 99\nmodel\t\t: 99\nflags\t: amx_bf16\n"
    zen4, zen5 = tmp_path / "zen4", tmp_path / "zen5"
    zen4.write_text(first.format(25, 17, "avx2 avx512_bf16 avx512f") + second)
    zen5.write_text(first.format(26, 2, "avx2 avx512_bf16 avx512_vp2intersect") + second)
    assert bench.cpu_model(str(zen4)) == bench.cpu_model(str(zen5)) == "AMD EPYC"
    assert bench.cpu_generation(str(zen4)) == {
        "cpu_family": "25",
        "cpu_model_number": "17",
        "cpu_bfloat16_flags": ["avx512_bf16"],  # the first processor's, not the second's amx_bf16
    }
    assert bench.cpu_generation(str(zen5))["cpu_family"] == "26"
    assert bench.cpu_generation(str(tmp_path / "missing"))["cpu_bfloat16_flags"] == []


def test_an_unknown_measure_is_refused_before_any_work() -> None:
    from tests.conftest import TINY, compose_train

    cfg = compose_train([*TINY, "bench.measure=[train,samplng]"], name="bench")
    with pytest.raises(DeliaError, match=r"bench.measure: unknown samplng: choose among train, sampling, "):
        bench.run_bench(cfg)


def test_the_default_runs_workload_is_one_prompt_per_diverse_answer() -> None:
    from tests.conftest import TINY, compose_train

    cfg = compose_train([*TINY, "diverse.ratio=3", "diverse.max_new_tokens=24"], name="bench")
    workload = bench.default_run_workload(cfg)
    n_task = len(prompted_task(cfg)["train"])
    assert workload.bench.sample_prompts == 3 * n_task > 0
    assert workload.bench.sample_max_new_tokens == 24
    assert list(workload.bench.samplers) == list(cfg.bench.default_workload_samplers)
    assert cfg.bench.sample_prompts == 32  # the config it came from is unchanged
    with pytest.raises(DeliaError, match="samples no diverse answers"):
        bench.default_run_workload(compose_train([*TINY, "diverse=none"], name="bench"))


def test_the_default_runs_sampling_has_its_own_rows_in_the_table() -> None:
    cell = {
        "workload": {"prompts": 4, "prompt_tokens_mean": 30.0, "prompt_tokens_max": 41, "max_new_tokens": 8},
        "tokens_per_s": {"sample/transformers": 10.0, "sample/torch_engine_bfloat16": 25.0},
        "reply_tokens": {"transformers": 7.0, "torch_engine_bfloat16": 6.0},
        "skipped": {"openvino": "not installed"},
        "logprob": {"transformers": {"mean": -1.0, "se": 0.1}},
    }
    results = {f"sampling_default_{key}": value for key, value in cell.items()}
    results["ratios"] = bench.sampling_ratios(cell["tokens_per_s"], "sampling_default")
    text = bench.table(results)
    assert results["ratios"] == {"default_run/sample/torch_engine_bfloat16_vs_transformers": 2.5}
    assert "default_run/sample workload" in text and "replies up to 8" in text
    assert "default_run/sample/torch_engine_bfloat16" in text and "25.0 generated tok/s" in text
    assert "default_run/sample/openvino" in text and "skipped" in text
    assert "sample/transformers" not in text.replace("default_run/sample/transformers", "")
