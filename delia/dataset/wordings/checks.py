"""The wording options checked before any work: the options themselves (:func:`check_options`, from
:func:`delia.config.validate`) and, on chat data, what the rows allow (:func:`check_rows`, from
:func:`delia.baselines.check_combination`): each problem one line naming the option and the fix.

- a pool, a fixed wording (``common_it``, ``ablation=no_task_diversification``) or a negative
  instruction on a chat dataset whose instruction is found in no row is refused, saying how to mark it;
- ``ablation=no_task_diversification`` on a dataset with one wording and no pool beyond it would train
  exactly what ``method=delia`` trains: refused, rather than reported as a second job under another name;
- the translation task has its own held-out wordings: a pool there is refused.
"""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from delia.dataset.wordings.apply import asked, needs_instruction, sources_of
from delia.dataset.wordings.instruction import compile_pattern, locate, own_wordings, refuse_unmatched
from delia.dataset.wordings.pool import read_file
from delia.infra.errors import DeliaError
from delia.infra.schema import pick

WHICH = ("pattern", "column", "sentence")


def check_options(cfg: DictConfig) -> None:
    """``wordings.*`` and ``dataset.instruction.*`` beyond their types (run after the schemas)."""
    options = cfg.get("wordings")
    if options is None:
        return
    sources = sources_of(cfg)
    if len(set(sources)) != len(sources):
        raise DeliaError(f"wordings.sources=[{','.join(sources)}] lists a source twice; list each once")
    model = options.paraphrase.get("model")
    if model is not None:
        from delia.model.schema import MODEL_SCHEMAS

        pick(
            MODEL_SCHEMAS, OmegaConf.to_container(model, resolve=True), "source", "wordings.paraphrase.model"
        )
    if "paraphrase" in sources:
        _paraphrase_options(options)
    if "file" in sources:
        read_file(options.get("file"), str(options.file_field))
    kind = cfg.dataset.kind
    if kind == "translation" and sources != ["none"]:
        raise DeliaError(
            f"wordings.sources=[{','.join(sources)}] applies to dataset=jsonl and dataset=sep_format; the "
            f"translation task keeps its own held-out wordings (delia/resources/translation_instructions.json): "
            f"use wordings=none"
        )
    if kind == "chat":
        _instruction_options(cfg.dataset)


def _paraphrase_options(options: DictConfig) -> None:
    from delia.diverse.samplers import check_installed

    if "{instruction}" not in str(options.paraphrase.prompt):
        raise DeliaError(
            "wordings.paraphrase.prompt has no {instruction}: write where the instruction goes, e.g. "
            "'Rewrite this instruction: {instruction}'"
        )
    check_installed(str(options.paraphrase.sampler), "wordings.paraphrase.sampler")


def _instruction_options(dataset: DictConfig) -> None:
    chosen = [k for k in WHICH if (dataset.get("instruction") or {}).get(k)]
    if len(chosen) > 1:
        raise DeliaError(
            f"dataset.instruction.{chosen[0]} and dataset.instruction.{chosen[1]} are both set: the instruction "
            f"is found one way; keep one"
        )
    if chosen == ["pattern"]:
        compile_pattern(str(dataset.instruction.pattern))


def check_rows(cfg: DictConfig) -> None:
    """On chat data, refuse what the rows cannot give (see the module docstring); reads the data only
    when the run rewrites instructions."""
    if cfg.dataset.kind != "chat" or cfg.get("wordings") is None or not needs_instruction(cfg):
        return
    from delia.dataset import chat

    splits = chat.build_splits(cfg.dataset)
    rows = [*splits["train"], *splits.get("eval", [])]
    located = locate(rows, cfg.dataset)
    refuse_unmatched(located, asked(cfg), str(cfg.dataset.path), len(rows))
    sources = sources_of(cfg)
    if cfg.ablation.name != "no_task_diversification" or not set(sources) <= {"none", "one"}:
        return
    if sources == ["one"] or len(own_wordings(located)) <= 1:
        raise DeliaError(
            f"ablation=no_task_diversification would train the same single wording as method=delia: the rows of "
            f"dataset.path={cfg.dataset.path} share one instruction and wordings.sources=[{','.join(sources)}] "
            f"adds none, so both are the same job; give DELIA wordings to diversify from: wordings=rules, "
            f"wordings=paraphrase or wordings.sources=[none,file] wordings.file=<path>"
        )
