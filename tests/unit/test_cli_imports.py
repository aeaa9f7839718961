"""The command modules import on their own, in any order: no import circle between them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


# The first import decides: a circle shows when one module of it is imported first.
FIRST_CLI_TRIAGE = (
    "import web.cli_triage, web.cli\n"
    "from web.cli import config_option, settings, transaction\n"
    "assert 'triage' in web.cli.main.commands"
)
STATEMENTS = [FIRST_CLI_TRIAGE, "import web.cli, web.cli_triage"]

# One interpreter for all the statements: before each, every module of the project (web,
# triage, intake) is dropped from sys.modules, so that each statement imports the project
# afresh, in its own order, as a new interpreter would. Only the libraries (Flask,
# SQLAlchemy, scikit-learn ...: three quarters of the import's CPU) stay loaded, and no
# circle of the project's can pass through them.
RUN_EACH_AFRESH = """
import json, sys, traceback
errors = []
for statement in json.loads(sys.argv[1]):
    for name in [m for m in sys.modules if m.split(".")[0] in ("web", "triage", "intake")]:
        del sys.modules[name]
    try:
        exec(statement, {})
        errors.append("")
    except BaseException:
        errors.append(traceback.format_exc())
print(json.dumps(errors))
"""


@pytest.fixture(scope="module")
def import_errors() -> dict[str, str]:
    """Each statement's traceback ("" when it ran) in a fresh interpreter: within the test
    run, another test has imported the modules already."""
    done = subprocess.run(
        [sys.executable, "-c", RUN_EACH_AFRESH, json.dumps(STATEMENTS)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return dict(zip(STATEMENTS, json.loads(done.stdout.splitlines()[-1]), strict=True))


@pytest.mark.parametrize("statement", STATEMENTS)
def test_command_module_imports_in_a_fresh_interpreter(
    statement: str, import_errors: dict[str, str]
) -> None:
    assert import_errors[statement] == ""
