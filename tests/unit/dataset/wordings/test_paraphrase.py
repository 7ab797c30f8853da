"""The model's paraphrases: through the sampler backends, cached like the diverse samples (keyed by the
paraphraser, the instruction, the prompt, the settings and the seed), resumable after a kill with
nothing lost or sampled twice, and another model may paraphrase."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from delia.dataset.wordings import paraphrase as para
from delia.dataset.wordings.base import Wording
from delia.diverse import samplers
from delia.diverse.backend import StreamingSampler
from tests.conftest import TINY, compose_train

BASES = [
    Wording("Answer in the <sep> format.", "one", "after"),
    Wording("Judge the reply in the <sep> format.", "none", "before"),
]
BACKENDS = ["transformers", "torch_engine"]


def paraphrase_cfg(*overrides: str):
    cfg = compose_train([*TINY, *(f"wordings.paraphrase.{o}" for o in overrides)])
    return cfg.wordings.paraphrase, cfg.model


def runtime(tiny_model, model_cfg, cache: Path) -> para.Runtime:
    model, tokenizer = tiny_model
    return para.Runtime(model, tokenizer, model_cfg, cache)


def cached_lines(cache: Path) -> dict[str, list[str]]:
    """Each instruction's cache folder and the records it holds, in the order they were appended."""
    files = {f.name: f / "samples.jsonl" for f in sorted((cache / "wordings").iterdir())}
    return {name: path.read_text().splitlines() if path.is_file() else [] for name, path in files.items()}


class Interrupt(Exception):
    """Raised to stop a paraphrasing run midway, as a kill would."""


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_killed_paraphrasing_run_resumes_without_loss_or_duplicates(
    backend: str, tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop the backend after 5 replies (streaming) or 2 batches of 4, rerun: 2 x 6 paraphrases, none
    lost, none twice, the first ones kept as they were."""
    cfg, model_cfg = paraphrase_cfg(f"sampler={backend}", "n=6", "max_new_tokens=6", "batch_size=4")
    model, tokenizer = tiny_model
    probe = samplers.make_sampler(model, tokenizer, cfg, None, tmp_path / "probe", {"name": "probe"})
    streaming, probe_cls = isinstance(probe, StreamingSampler), type(probe)
    probe.close()
    method = "stream" if streaming else "generate"
    real = getattr(probe_cls, method)
    calls = []

    def dies_midway(self, prompts, seeds):
        if streaming:
            return _die_after(real(self, prompts, seeds), 5)
        calls.append(len(prompts))
        if len(calls) == 3:
            raise Interrupt
        return real(self, prompts, seeds)

    monkeypatch.setattr(probe_cls, method, dies_midway)
    with pytest.raises(Interrupt):
        para.paraphrases(BASES, cfg, ["<sep>"], runtime(tiny_model, model_cfg, tmp_path))
    first = cached_lines(tmp_path)
    assert sum(len(lines) for lines in first.values()) == (5 if streaming else 8)  # cached as they ended
    monkeypatch.setattr(probe_cls, method, real)
    wordings = para.paraphrases(BASES, cfg, ["<sep>"], runtime(tiny_model, model_cfg, tmp_path))
    after = cached_lines(tmp_path)
    assert len(after) == 2  # one folder per instruction
    for name, lines in after.items():
        assert sorted(json.loads(line)["i"] for line in lines) == list(range(6))
        assert lines[: len(first.get(name, []))] == first.get(name, [])
    assert len(wordings) == 12 and all(w.source == "paraphrase" for w in wordings)
    assert [w.position for w in wordings] == ["after"] * 6 + ["before"] * 6  # each keeps its base's position


def _die_after(stream, n: int):
    for k, item in enumerate(stream):
        if k == n:
            raise Interrupt
        yield item


def test_the_cache_is_reused_and_keyed_by_model_instruction_prompt_settings_and_seed(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg, model_cfg = paraphrase_cfg("sampler=torch_engine", "n=3", "max_new_tokens=4")
    run = runtime(tiny_model, model_cfg, tmp_path)
    first = para.paraphrases(BASES[:1], cfg, ["<sep>"], run)

    def no_sampling(*args, **kwargs):
        raise AssertionError("everything was in the cache: nothing to sample")

    monkeypatch.setattr(para, "make_sampler", no_sampling)
    assert para.paraphrases(BASES[:1], cfg, ["<sep>"], run) == first
    identity = {"name": "tiny_random"}
    key = para.cache_key(identity, BASES[0].text, "p", cfg)
    others = [
        para.cache_key({"name": "other"}, BASES[0].text, "p", cfg),
        para.cache_key(identity, BASES[1].text, "p", cfg),
        para.cache_key(identity, BASES[0].text, "another prompt", cfg),
        para.cache_key(identity, BASES[0].text, "p", OmegaConf.merge(cfg, {"temperature": 0.5})),
        para.cache_key(identity, BASES[0].text, "p", OmegaConf.merge(cfg, {"seed": 1})),
        para.cache_key(identity, BASES[0].text, "p", OmegaConf.merge(cfg, {"sampler": "transformers"})),
    ]
    assert len({key, *others}) == 7
    assert para.cache_key(identity, BASES[0].text, "p", OmegaConf.merge(cfg, {"n": 9})) == key  # more: reused


def test_another_model_can_paraphrase(tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    overrides = ["+model@wordings.paraphrase.model=tiny_random", "wordings.paraphrase.model.init_seed=7"]
    cfg = compose_train(
        [*TINY, *overrides, "wordings.paraphrase.n=2", "wordings.paraphrase.max_new_tokens=4"]
    )
    loaded = []
    real = para.load_base

    def spy(model_cfg, cache_dir):
        loaded.append(model_cfg.init_seed)
        return real(model_cfg, cache_dir)

    monkeypatch.setattr(para, "load_base", spy)
    para.paraphrases(BASES[:1], cfg.wordings.paraphrase, ["<sep>"], runtime(tiny_model, cfg.model, tmp_path))
    assert loaded == [7]  # the paraphraser, not the run's model (init_seed 0)
    [folder] = (tmp_path / "wordings").iterdir()
    assert json.loads((folder / "meta.json").read_text())["model"]["init_seed"] == 7


def test_a_reply_becomes_its_first_line_without_label_or_quotes() -> None:
    assert (
        para.clean('Instruction: "Reply in the <sep> format."\nThis keeps the meaning.')
        == "Reply in the <sep> format."
    )
    assert para.clean("**New instruction:** Use <sep>.") == "Use <sep>."
    assert para.prompt_text("Keep it{keep}: {instruction}", "Use <sep>, yes.", ["<sep>", "yes", "no"]) == (
        "Keep it and keep <sep>, yes exactly as written (the new instruction must contain <sep>, yes): Use <sep>, yes."
    )
    assert para.prompt_text("Keep it{keep}: {instruction}", "Add them.", []) == "Keep it: Add them."


def test_the_paraphraser_sees_the_examples_first_then_the_instruction() -> None:
    cfg, _ = paraphrase_cfg()
    chat = para.conversation(cfg, "Answer in the <sep> format.", ["<sep>"])
    assert [m["role"] for m in chat] == ["user", "assistant"] * len(cfg.examples) + ["user"]
    assert chat[1]["content"] == cfg.examples[0].paraphrase and "<fmt>" in chat[0]["content"]
    assert (
        chat[-1]["content"].endswith("Instruction: Answer in the <sep> format.")
        and "<fmt>" not in chat[-1]["content"]
    )
