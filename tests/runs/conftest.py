"""tests/runs/: the tests that start a whole run (delia-train, a sweep, delia-bench, a dashboard on a
sweep). Each is marked ``slow``; they still run in CI and under the README's test command
(``-m "not slow"`` leaves them out for a quick local loop)."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if HERE in Path(item.fspath).parents:
            item.add_marker(pytest.mark.slow)
