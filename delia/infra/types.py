"""The shared types of the data that moves between the parts: one definition each."""

from __future__ import annotations

from typing import Any

Record = dict[str, Any]  # one chat record: ``messages`` plus what the metrics need
Splits = dict[str, list[Record]]  # split name (train, eval, seen_wordings, ...) -> its records
