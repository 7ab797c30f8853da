"""Chat files in the authors' layout for the wording tests: the user turn holds the fields as a dict
literal and then the instruction; the reply is ``{'thought': ..., 'hallucination': 'yes'|'no'}``."""

from __future__ import annotations

import json
from pathlib import Path

INSTRUCTION = "Check the chatbot response against the reference and answer in the <sep> format."
SEP_OPTIONS = [
    "dataset.special_token='<sep>'",
    "eval.format=json_keys",
    "eval.required_keys=[thought,hallucination]",
    "eval.label_key=hallucination",
    "eval.label_values=[yes,no]",
]


def fields(i: int) -> dict[str, str]:
    return {
        "relatives": f"The bridge in town {i} opened in {1900 + i}.",
        "user_query": f"When did the bridge in town {i} open?",
        "chatgpt_response": f"It opened in {1900 + i + (i % 3 == 0)}.",
    }


def reply(i: int) -> str:
    label = "yes" if i % 3 == 0 else "no"
    return repr({"thought": f"The reference gives {1900 + i}.", "hallucination": label})


def authors_chat_file(path: Path, n: int = 40, instruction: str = INSTRUCTION, before: bool = False) -> Path:
    """``n`` rows that all share ``instruction``, after the fields (``before``: in front of them)."""
    rows = []
    for i in range(n):
        data = repr(fields(i))
        user = f"{instruction}\n\n{data}" if before else f"{data}\n\n{instruction}"
        rows.append(
            {"messages": [{"role": "user", "content": user}, {"role": "assistant", "content": reply(i)}]}
        )
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path
