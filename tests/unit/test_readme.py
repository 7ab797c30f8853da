"""README.md holds exactly two set-up commands; the second is what CI runs (.ci/run's last line)."""

from __future__ import annotations

import re

from tests.conftest import REPO


def setup_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (REPO / "README.md").read_text(), flags=re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("pip install")]


def test_the_readme_has_two_set_up_commands_and_ci_runs_the_second() -> None:
    train, test = setup_commands()
    assert train.endswith("&& delia-train") and "llamacpp" not in train  # compiles nothing
    assert test.endswith("&& python -m pytest")
    ci = [line for line in (REPO / ".ci" / "run").read_text().splitlines() if line.strip()]
    assert ci[-1] == test
