"""`minsheng report monthly` refuses bad arguments with a message saying what is wrong, never
a traceback: months the calendar cannot hold or that have not begun, recipients that are not
one bare address, --to without --send, an --output folder that cannot be written. Runs on
SQLite and PostgreSQL (MINSHENG_TEST_DB)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from web.cli import main


def _report(config_file: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["report", "monthly", "--config", str(config_file), *args])


@pytest.fixture
def ready(config_file: Path) -> Path:
    result = CliRunner().invoke(main, ["init", "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    return config_file


@pytest.mark.parametrize(
    ("month", "says"),
    [
        ("0000-01", "out of range"),
        ("0001-01", "out of range"),
        ("9999-12", "out of range"),
        ("", "is not YYYY-MM"),
        ("2999-01", "has not begun yet"),
    ],
)
def test_a_month_out_of_range_empty_or_to_come_is_refused(
    ready: Path, month: str, says: str
) -> None:
    result = _report(ready, "--month", month, "--json")
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert says in result.output and "--month" in result.output


@pytest.mark.parametrize("to", ["a@x.org,b@y.org", "Boss <boss@x.org>", "a@b@c", "@", "x@"])
def test_a_recipient_that_is_not_one_bare_address_is_refused(ready: Path, to: str) -> None:
    result = _report(ready, "--month", "2026-10", "--send", "--to", to)
    assert result.exit_code == 2, result.output
    assert "is not a mail address" in result.output


def test_to_without_send_is_refused_rather_than_ignored(ready: Path) -> None:
    result = _report(ready, "--month", "2026-10", "--to", "quzhang@example.gov.cn")
    assert result.exit_code == 2, result.output
    assert "--send" in result.output


def test_an_output_folder_that_cannot_be_made_is_an_error_not_a_traceback(ready: Path) -> None:
    result = _report(ready, "--month", "2026-10", "--output", "/proc/minsheng-report")
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "cannot write the report into /proc/minsheng-report" in result.output
