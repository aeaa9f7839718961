"""The `minsheng` command as an operator uses it: init, export, config errors."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.integration.helpers import submit_complaint
from web.cli import main

EXPORT_FIELDS = {
    "tracking_number",
    "channel",
    "kind",
    "status",
    "department",
    "suggested_department",
    "confidence",
    "received_at",
    "due_at",
    "closed_at",
    "subject",
    "body",
    "events",
}


def run(*args: str) -> Any:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_init_is_safe_to_run_again(config_file: Path) -> None:
    first = run("init", "--config", str(config_file))
    assert first.exit_code == 0, first.output
    again = run("init", "--config", str(config_file))
    assert again.exit_code == 0
    assert "already match the config" in again.output


def test_export_has_every_case_with_its_fields(
    config_file: Path, client: Any, login_as: Any
) -> None:
    bodies = [
        "明德路的路灯坏了三个星期，晚上很危险",
        "翠湖小区门口垃圾一周没人清运",
        "青松街道菜市场周末占道经营，车辆无法通行",
    ]
    numbers = [submit_complaint(client, body)[0] for body in bodies]
    out = run("export", "cases", "--format", "jsonl", "--config", str(config_file))
    assert out.exit_code == 0, out.output
    records = [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]
    assert [r["tracking_number"] for r in records] == numbers
    for r in records:
        assert r.keys() >= EXPORT_FIELDS
        assert r["channel"] == "web" and r["kind"] == "complaint" and r["status"] == "triage"
        assert r["events"] == 3 and r["received_at"].endswith("+08:00")
        assert r["contact_phone"] == "138****5678"  # masked unless --unmasked

    target = config_file.parent / "cases.csv"
    out = run(
        "export", "cases", "--format", "csv", "--output", str(target), "--config", str(config_file)
    )
    assert out.exit_code == 0
    # UTF-8 with a byte-order mark, as Excel on Chinese Windows needs it.
    assert target.read_bytes().startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert [r["tracking_number"] for r in rows] == numbers
    assert rows[0].keys() >= EXPORT_FIELDS
    unmasked = run("export", "cases", "--unmasked", "--config", str(config_file))
    assert "13812345678" in unmasked.stdout


def test_unknown_config_key_stops_with_file_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[app]\ntimezone = "Asia/Shanghai"\ntimzone = "typo"\n', encoding="utf-8")
    out = CliRunner().invoke(main, ["init", "--config", str(bad)])
    assert out.exit_code != 0
    assert "bad.toml" in out.output and "app.timzone: unknown key" in out.output
    missing = CliRunner().invoke(main, ["init", "--config", str(tmp_path / "nope.toml")])
    assert missing.exit_code != 0 and "config file not found" in missing.output
