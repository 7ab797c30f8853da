"""The recipe's own choices: the diagnostics' task probe is the same examples for every method."""

from __future__ import annotations

from delia.baselines import prompted_task
from delia.recipe import task_probe
from tests.conftest import TINY, compose_train


def test_every_method_gets_the_same_task_probe_of_held_out_facts_and_wordings() -> None:
    probes = {
        m: task_probe(prompted_task(compose_train([*TINY, f"method={m}"]))) for m in ("delia", "common_it")
    }
    assert probes["delia"] and probes["delia"] == probes["common_it"]
    splits = prompted_task(compose_train([*TINY, "method=common_it"]))
    assert probes["delia"] == splits["unseen_wordings"]
    # the seen-wordings split is each method's own: one wording for common_it, several for DELIA
    seen = {
        m: prompted_task(compose_train([*TINY, f"method={m}"]))["seen_wordings"]
        for m in ("delia", "common_it")
    }
    assert seen["delia"] != seen["common_it"]


def test_a_baseline_that_trains_nothing_reports_no_steps_and_no_passes() -> None:
    from delia.protocol import RunLength
    from delia.recipe import protocol_metrics

    length = RunLength("exposure", 24, 3, 4)
    trained = protocol_metrics(compose_train([*TINY, "method=delia"]), length)
    assert trained["protocol/steps"] == 24 and trained["protocol/task_epochs"] == 3
    untrained = protocol_metrics(compose_train([*TINY, "method=ctg"]), length)
    assert untrained["protocol/steps"] == 0 and "protocol/task_epochs" not in untrained
