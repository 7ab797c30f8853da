"""Translation quality: corpus chrF and BLEU (sacrebleu defaults) and, given a checkpoint, mean BLEURT.

Every function takes one reference per hypothesis. BLEU uses sacrebleu's default ``13a`` tokenizer;
chrF its defaults (character 6-grams, no word n-grams, beta 2). BLEURT runs the PyTorch port
(``bleurt_pytorch``), which is optional: install it and point ``eval.bleurt_checkpoint`` to a local
checkpoint folder.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from delia.infra.errors import DeliaError, first_line

BLEURT_FIX = (
    "install the PyTorch port (pip install git+https://github.com/lucadiliello/bleurt-pytorch) and set "
    "eval.bleurt_checkpoint to a local BLEURT checkpoint folder (or leave it null to skip BLEURT)"
)


def _check(hypotheses: Sequence[str], references: Sequence[str]) -> None:
    if len(hypotheses) != len(references):
        raise DeliaError(
            f"{len(hypotheses)} hypotheses but {len(references)} references: translation metrics need one "
            f"reference per hypothesis"
        )
    if not hypotheses:
        raise DeliaError("no hypotheses to score: translation metrics need at least one output")
    for index, text in enumerate([*hypotheses, *references]):
        if not isinstance(text, str):
            raise DeliaError(f"translation metrics: item {index} is a {type(text).__name__}, not a string")


def chrf(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus chrF (0-100) with sacrebleu's default settings."""
    from sacrebleu.metrics import CHRF

    _check(hypotheses, references)
    return float(CHRF().corpus_score(list(hypotheses), [list(references)]).score)


def bleu(hypotheses: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (0-100) with sacrebleu's default settings (13a tokenizer, exp smoothing)."""
    from sacrebleu.metrics import BLEU

    _check(hypotheses, references)
    return float(BLEU().corpus_score(list(hypotheses), [list(references)]).score)


def _bleurt_classes(checkpoint: str) -> tuple[Any, Any]:
    """The model and tokenizer classes of ``bleurt_pytorch``; a missing folder or package is one line."""
    if not Path(checkpoint).expanduser().is_dir():
        raise DeliaError(f"eval.bleurt_checkpoint={checkpoint}: no such folder; {BLEURT_FIX}")
    try:
        from bleurt_pytorch import BleurtForSequenceClassification, BleurtTokenizer
    except ImportError:
        raise DeliaError(
            f"eval.bleurt_checkpoint={checkpoint}: bleurt_pytorch is not installed; {BLEURT_FIX}"
        ) from None
    return BleurtForSequenceClassification, BleurtTokenizer


def _load_bleurt(checkpoint: str) -> tuple[Any, Any]:
    model_class, tokenizer_class = _bleurt_classes(checkpoint)
    folder = str(Path(checkpoint).expanduser())
    try:
        model = model_class.from_pretrained(folder)
        tokenizer = tokenizer_class.from_pretrained(folder)
    except Exception as err:  # a foreign or truncated folder raises many kinds
        raise DeliaError(
            f"eval.bleurt_checkpoint={checkpoint}: cannot load it ({first_line(err)}); {BLEURT_FIX}"
        ) from err
    model.eval()
    return model, tokenizer


def _batches(items: Sequence[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])


def bleurt(
    hypotheses: Sequence[str], references: Sequence[str], checkpoint: str, batch_size: int = 16
) -> float:
    """Mean BLEURT score of the hypotheses against their references (``checkpoint``: a local folder)."""
    _check(hypotheses, references)
    model, tokenizer = _load_bleurt(checkpoint)
    import torch

    scores: list[float] = []
    with torch.no_grad():
        for refs, hyps in zip(
            _batches(references, batch_size), _batches(hypotheses, batch_size), strict=True
        ):
            inputs = tokenizer(refs, hyps, padding="longest", truncation=True, return_tensors="pt")
            scores.extend(float(x) for x in model(**inputs).logits.flatten().tolist())
    return sum(scores) / len(scores)


def translation_scores(
    hypotheses: Sequence[str], references: Sequence[str], bleurt_checkpoint: str | None = None
) -> dict[str, float]:
    """``{"chrf", "bleu"}`` and, when a BLEURT checkpoint is given, ``"bleurt"``."""
    scores = {"chrf": chrf(hypotheses, references), "bleu": bleu(hypotheses, references)}
    if bleurt_checkpoint:
        scores["bleurt"] = bleurt(hypotheses, references, bleurt_checkpoint)
    return scores
