"""The command modules import on their own, in any order: no import circle between them."""

from __future__ import annotations

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


@pytest.mark.parametrize("statement", [FIRST_CLI_TRIAGE, "import web.cli, web.cli_triage"])
def test_command_module_imports_in_a_fresh_interpreter(statement: str) -> None:
    # A fresh interpreter: within the test run, another test has imported them already.
    done = subprocess.run(
        [sys.executable, "-c", statement], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
