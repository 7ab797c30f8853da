"""Run several invocations of a delia command in one Python process, as a test helper.

``python -m tests.cli_batch <spec.json> <out.json>``: the spec holds a list of commands, each a module
(``delia.cli.train``) and its argument list; each runs as ``main()`` would under its console script, with its own
``sys.argv``, stdout and stderr captured and its exit status recorded. The imports (torch, Lightning)
are paid once instead of once per case; each case still gets a fresh Hydra and fresh logging.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import os
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def run_one(main: Any, argv: list[str]) -> dict[str, Any]:
    from hydra.core.global_hydra import GlobalHydra

    out, err, code = io.StringIO(), io.StringIO(), 0
    sys.argv = ["delia", *argv]
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main()
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
        except BaseException:  # what a console script would print before dying
            traceback.print_exc()
            code = 1
        finally:
            GlobalHydra.instance().clear()
    return {"returncode": code, "stdout": out.getvalue(), "stderr": err.getvalue()}


def run_batch(
    module: str, cases: list[list[str]], workdir: Path, env: dict[str, str], timeout: int = 1200
) -> list[dict[str, Any]]:
    """Run ``cases`` of ``module`` in one child process (cwd ``workdir``); one result dict per case."""
    return run_commands([(module, argv) for argv in cases], workdir, env, timeout)


def run_commands(
    commands: list[tuple[str, list[str]]], workdir: Path, env: dict[str, str], timeout: int = 1200
) -> list[dict[str, Any]]:
    """Run each ``(module, argv)`` in order in one child process (cwd ``workdir``); one result dict each."""
    spec, out = workdir / "cases.json", workdir / "answers.json"
    spec.write_text(json.dumps({"commands": commands}))
    path = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    cmd = [sys.executable, "-m", "tests.cli_batch", str(spec), str(out)]
    subprocess.run(cmd, cwd=workdir, env={**env, "PYTHONPATH": path}, check=True, timeout=timeout)
    return json.loads(out.read_text())


def main() -> None:
    spec_path, out_path = sys.argv[1:3]
    spec = json.loads(open(spec_path).read())
    results = [run_one(importlib.import_module(m).main, argv) for m, argv in spec["commands"]]
    with open(out_path, "w") as handle:
        json.dump(results, handle)


if __name__ == "__main__":
    main()
