"""delia-bench runs on the tiny model and writes its table; its FLOP and token accounting is right.

No timing is asserted here: benchmarks report ratios, tests only check that they are measured.
"""

from __future__ import annotations

import torch

from delia.data.datamodule import collate
from delia.data.packing import collate_packed
from delia.tools import bench


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


def test_ratios_are_ours_over_each_peer() -> None:
    assert bench.ratios({"ours": 300.0, "trl_release": 100.0, "hf_trainer": 150.0}) == {
        "train/ours_vs_trl_release": 3.0,
        "train/ours_vs_hf_trainer": 2.0,
    }


def test_the_vocabulary_projection_counts_only_at_label_positions() -> None:
    # 100 of the 1000 weights are the head; 30 tokens, 5 of them labels:
    # body 2 passes x 2 x 900 x 30 = 108000; head 4 x 100 x 5 = 2000; attention as above 48000
    assert bench.step_flops([10, 20], 1000, 2, 8, False, head_params=100, head_tokens=5) == 158000.0


def test_peak_rss_is_this_process_peak() -> None:
    import resource

    peak = bench.peak_rss_bytes()
    assert 0 < peak <= resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 * 1.01
