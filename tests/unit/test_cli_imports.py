"""The command modules import on their own, in any order: no import circle between them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "statement",
    [
        "import web.cli_triage",
        "import web.cli",
        "import web.cli_common",
        "import web.cli_triage, web.cli; assert 'triage' in web.cli.main.commands",
        "from web.cli import config_option, settings, transaction",
    ],
)
def test_command_module_imports_in_a_fresh_interpreter(statement: str) -> None:
    # A fresh interpreter: within the test run, another test has imported them already.
    done = subprocess.run(
        [sys.executable, "-c", statement], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
