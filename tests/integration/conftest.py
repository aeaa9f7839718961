"""Fixtures for tests that drive the `minsheng` command."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT


@pytest.fixture
def config_file(tmp_path: Path, db_url: str) -> Path:
    text = (ROOT / "config.toml").read_text(encoding="utf-8")
    text = text.replace('url = "sqlite:///instance/minsheng.db"', f'url = "{db_url}"')
    text = text.replace('instance_dir = "instance"', f'instance_dir = "{tmp_path / "inst"}"')
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path
