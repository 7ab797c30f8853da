"""The built-in downstream task: the paper's formatted hallucination check with a new token ``<sep>``.

The user turn shows a block with a reference passage (``relatives``), a user question (``user_query``)
and a chatbot response (``chatgpt_response``), and an instruction that asks for the answer "in the
<sep> format" without describing it. The target is always ``{'thought': ..., 'hallucination': 'yes'|'no'}``.

*Anisotropic diversification*: every training example gets a differently worded instruction (wording,
position, length, register vary; the task and the format do not). The *prior description* of ``<sep>``
(the long format prompt) is part of the task but never shown in training.

Splits, each named by what it holds (facts are never shared between training and evaluation):
- ``train``: facts of the training pool, the run's training wordings;
- ``seen_wordings`` (``dataset.eval_size``): unseen facts, only wordings this run trained on (one wording
  for a method without diversification, the diversified ones for DELIA);
- ``unseen_wordings`` (``dataset.heldout_size``): unseen facts, held-out wordings no run trains on; the
  same examples for every method of a sweep;
- ``negative``: unseen facts, "do NOT use the <sep> format".
Everything is generated deterministically from ``dataset.seed``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

from omegaconf import DictConfig

from delia.dataset.diversification import Instruction, anisotropic_wordings
from delia.eval.probe import normalize, probe_questions
from delia.infra.errors import DeliaError

SPLITS = ("train", "seen_wordings", "unseen_wordings", "negative")
EVAL_SPLITS = SPLITS[1:]
FORMAT_KEYS = ("thought", "hallucination")
LABELS = ("yes", "no")


@dataclass(frozen=True)
class Fact:
    id: str
    domain: str
    question: str
    reference: str
    correct_response: str
    wrong_response: str
    correct_reason: str
    wrong_reason: str


@dataclass(frozen=True)
class SepResources:
    facts: tuple[Fact, ...]
    prior_description: str
    train: tuple[Instruction, ...]
    heldout: tuple[Instruction, ...]
    negative: tuple[Instruction, ...]


def _resource_text(name: str) -> str:
    return resources.files("delia.resources").joinpath(name).read_text(encoding="utf-8")


@cache
def load_resources() -> SepResources:
    """The project's own facts and instruction wordings (delia/resources/)."""
    facts = tuple(
        Fact(**json.loads(line)) for line in _resource_text("facts.jsonl").splitlines() if line.strip()
    )
    wordings = json.loads(_resource_text("sep_instructions.json"))

    def instructions(key: str) -> tuple[Instruction, ...]:
        return tuple(Instruction(**item) for item in wordings[key])

    return SepResources(
        facts=facts,
        prior_description=wordings["prior_description"],
        train=instructions("train"),
        heldout=instructions("heldout"),
        negative=instructions("negative"),
    )


def prior_description(token: str = "<sep>") -> str:
    """The long format description that ``token`` stands for (never shown in training)."""
    return load_resources().prior_description.replace("<sep>", token)


def data_block(fact: Fact, hallucinated: bool) -> str:
    """The user turn's data, as the release wrote it: a dict literal with three fields."""
    response = fact.wrong_response if hallucinated else fact.correct_response
    return repr({"relatives": fact.reference, "user_query": fact.question, "chatgpt_response": response})


def target_reply(fact: Fact, hallucinated: bool) -> str:
    """The fixed output format: ``{'thought': ..., 'hallucination': 'yes'|'no'}``."""
    thought = fact.wrong_reason if hallucinated else fact.correct_reason
    return repr({"thought": thought, "hallucination": "yes" if hallucinated else "no"})


def user_turn(block: str, instruction: Instruction, token: str) -> str:
    text = instruction.text.replace("<sep>", token)
    return f"{text}\n\n{block}" if instruction.position == "before" else f"{block}\n\n{text}"


def make_example(
    fact: Fact, hallucinated: bool, instruction: Instruction, token: str, split: str, with_target: bool
) -> dict[str, Any]:
    messages = [{"role": "user", "content": user_turn(data_block(fact, hallucinated), instruction, token)}]
    if with_target:
        messages.append({"role": "assistant", "content": target_reply(fact, hallucinated)})
    return {
        "messages": messages,
        "label": "yes" if hallucinated else "no",
        "split": split,
        "fact_id": fact.id,
        "instruction": instruction.text,
        "origin": f"sep_format/{split}/{fact.id}",
    }


def _labels(n: int, yes_fraction: float, rng: random.Random) -> list[bool]:
    n_yes = round(n * yes_fraction)
    labels = [True] * n_yes + [False] * (n - n_yes)
    rng.shuffle(labels)
    return labels


def _draw(pool: list[Fact], n: int, option: str, rng: random.Random) -> list[Fact]:
    if n > len(pool):
        raise DeliaError(f"{option}={n} exceeds the {len(pool)} facts available for it; lower {option}")
    return rng.sample(pool, n)


def _split(
    name: str,
    pool: list[Fact],
    size: int,
    option: str,
    yes_fraction: float,
    wordings: list[Instruction],
    cfg: DictConfig,
    with_target: bool = True,
) -> list[dict[str, Any]]:
    """``size`` examples of ``pool`` (drawn with the split's own seed), labels and wordings assigned."""
    rng = random.Random(f"{cfg.seed}/{option}")  # keyed by the size option: a split keeps its facts
    drawn = _draw(pool, size, f"dataset.{option}_size", rng)
    labels = _labels(len(drawn), yes_fraction, rng)
    texts = anisotropic_wordings(len(drawn), tuple(wordings), True, rng)
    return [
        make_example(fact, hallucinated, instruction, cfg.special_token, name, with_target)
        for fact, hallucinated, instruction in zip(drawn, labels, texts, strict=True)
    ]


def fact_pools(cfg: DictConfig) -> tuple[list[Fact], list[Fact]]:
    """The training facts and the evaluation facts: disjoint, seeded; training leaves out the facts that
    the general-knowledge probe asks about (so retention does not measure what the task trained)."""
    facts = sorted(load_resources().facts, key=lambda f: f.id)
    random.Random(cfg.seed).shuffle(facts)
    n_eval = round(len(facts) * cfg.eval_fact_fraction)
    asked = probe_questions()
    return [f for f in facts[n_eval:] if normalize(f.question) not in asked], facts[:n_eval]


def build_splits(cfg: DictConfig) -> dict[str, list[dict[str, Any]]]:
    """Generate the splits of the task from ``cfg`` (conf/dataset/sep_format.yaml); see the module docstring."""
    res = load_resources()
    train_pool, eval_pool = fact_pools(cfg)
    train_rng = random.Random(f"{cfg.seed}/train")
    drawn = _draw(train_pool, int(cfg.train_size), "dataset.train_size", train_rng)
    labels = _labels(len(drawn), cfg.yes_fraction, train_rng)
    texts = anisotropic_wordings(len(drawn), res.train, cfg.diversify_instructions, train_rng)
    train = [
        make_example(fact, hallucinated, instruction, cfg.special_token, "train", True)
        for fact, hallucinated, instruction in zip(drawn, labels, texts, strict=True)
    ]
    seen = list(dict.fromkeys(texts))  # the wordings this run trains on, in order of first use
    yes = cfg.eval_yes_fraction
    return {
        "train": train,
        "seen_wordings": _split("seen_wordings", eval_pool, int(cfg.eval_size), "eval", yes, seen, cfg),
        "unseen_wordings": _split(
            "unseen_wordings", eval_pool, int(cfg.heldout_size), "heldout", yes, list(res.heldout), cfg
        ),
        "negative": _split(
            "negative", eval_pool, int(cfg.negative_size), "negative", yes, list(res.negative), cfg, False
        ),
    }
