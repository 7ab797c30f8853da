"""Rule-written wordings (``wordings.sources`` ``rules``): no model, deterministic given ``wordings.seed``.

From each base instruction the rules write one variant per register x length x position
(``wordings.rules.*``), so that a single instruction becomes a set that differs along the axes of
anisotropic diversification:

- register: *imperative* ("Compare ..."), *question* ("Could you compare ...?"), *polite* ("Please
  compare ..."), *terse* (articles and courtesy words dropped: "Compare chatbot response ...");
- length: *short* (the instruction alone) or *long* (followed by a sentence that restates the goal);
- position: before or after the data (each position gets another template, so no two variants share a text).

The rewriting applies to the base's last sentence (the one that asks for the reply); earlier sentences
stay in front of it unchanged. A last sentence that is a question we cannot turn into a request ("Does
the reply ...?") gives no variant. The templates add no word of their own that a filter could forbid
(nothing about the output format); every string of the base (a special token, a label word) is kept.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence

from delia.dataset.wordings.base import Wording

TEMPLATES: dict[str, tuple[str, ...]] = {
    "imperative": ("{Core}.", "Now {core}.", "Your task: {core}."),
    "question": ("Could you {core}?", "Can you {core}?", "Would you {core}?"),
    "polite": ("Please {core}.", "Kindly {core}.", "I would be grateful if you could {core}."),
    "terse": ("{Terse}.", "Task: {terse}.", "To do: {terse}."),
}
RESTATED = (
    "Remember, the goal is to {core}.",
    "To restate the goal: {core}.",
    "In other words, {core}, and nothing more.",
    "That is the whole task: {core}.",
)
_COURTESY = re.compile(
    r"^(please|kindly|could you|can you|would you|will you|i would like you to|"
    r"i would be grateful if you could)\s+",
    re.IGNORECASE,
)
_QUESTION = re.compile(
    r"^(does|do|did|is|are|was|were|has|have|had|can|could|would|will|should|which|what|how|why|when|where|who)\b",
    re.IGNORECASE,
)
_TERSE_DROPPED = {"the", "a", "an", "your", "please", "kindly", "carefully", "then", "that"}
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def split_last_sentence(text: str) -> tuple[str, str]:
    """``(the sentences before the last, the last sentence)``."""
    parts = _SENTENCE_END.split(text.strip())
    return " ".join(parts[:-1]), parts[-1]


def request_core(sentence: str) -> str | None:
    """The request a sentence makes, as a verb phrase ("compare the response ... format"); None for a
    question that is not a request ("Does the reply stay faithful?")."""
    body = sentence.strip()
    question = body.endswith("?")
    body = body.rstrip(".!?…: ").strip()
    stripped = _COURTESY.sub("", body)
    if question and stripped == body and _QUESTION.match(body):
        return None
    if not stripped:
        return None
    return _lower_first(stripped)


def _lower_first(text: str) -> str:
    first = text.split()[0]
    if first.isupper() or not first[0].isalpha():  # an acronym, a special token: as written
        return text
    return text[0].lower() + text[1:]


def _upper_first(text: str) -> str:
    return text[0].upper() + text[1:] if text and text[0].isalpha() else text


def terse(core: str) -> str:
    return " ".join(word for word in core.split() if word.lower() not in _TERSE_DROPPED)


def sentence(register: str, template: str, core: str) -> str:
    short = terse(core)
    return template.format(core=core, Core=_upper_first(core), terse=short, Terse=_upper_first(short))


def variants(
    base: Wording,
    registers: Sequence[str],
    lengths: Sequence[str],
    positions: Sequence[str],
    seed: int,
) -> list[Wording]:
    """The rule variants of one base wording (see the module docstring), deterministic given ``seed``."""
    head, last = split_last_sentence(base.text)
    core = request_core(last)
    if core is None:
        return []
    rng = random.Random(f"{seed}/rules/{base.text}")
    out = []
    for register in registers:
        templates = TEMPLATES[register]
        for length in lengths:
            picks = rng.sample(range(len(templates)), k=min(len(positions), len(templates)))
            for position, pick in zip(positions, picks, strict=False):
                text = sentence(register, templates[pick], core)
                if length == "long":
                    text = f"{text} {rng.choice(RESTATED).format(core=core)}"
                text = f"{head} {text}" if head else text
                out.append(Wording(text, "rules", position, register, length))
    return out


def rule_wordings(
    bases: Sequence[Wording],
    registers: Sequence[str],
    lengths: Sequence[str],
    positions: Sequence[str],
    seed: int,
) -> list[Wording]:
    """Every base's variants, base by base."""
    return [w for base in bases for w in variants(base, registers, lengths, positions, seed)]
