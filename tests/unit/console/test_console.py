"""The console's filters: library warnings the user cannot act on are dropped by their exact text, the
actionable ones stay. (Each entry point's whole console: tests/runs/test_console.py.)"""

from __future__ import annotations

import subprocess
import sys

QUIET = """
import logging, warnings
logging.basicConfig(format="%(name)s|%(message)s")
from delia.console import QUIET_WARNINGS, setup_console
setup_console()
warnings.warn(QUIET_WARNINGS[0], FutureWarning)
warnings.warn("lower optimizer.lr: the loss is rising", UserWarning)
logging.getLogger("x").info("not shown below WARNING")
"""


def test_warnings_are_filtered_by_exact_text_and_actionable_ones_stay() -> None:
    result = subprocess.run([sys.executable, "-c", QUIET], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "is_gradient_checkpointing" not in result.stderr
    assert "py.warnings|UserWarning: lower optimizer.lr: the loss is rising" in result.stderr
