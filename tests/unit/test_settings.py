"""The config file: the shipped one is valid; mistakes stop start-up naming key and file."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ROOT, base_config
from web.settings import ConfigError, load_settings, settings_from_dict


def test_shipped_config_is_valid_and_maps_the_data_labels() -> None:
    s = load_settings(ROOT / "config.toml")
    assert s.source.endswith("config.toml")
    labels = set(s.label_map)
    assert {
        "城乡建设",
        "环境保护",
        "交通运输",
        "教育文体",
        "劳动和社会保障",
        "商贸旅游",
        "卫生计生",
    } <= labels
    assert "safety" in {d.code for d in s.departments}
    roles = {u.role for u in s.users}
    assert roles == {"admin", "supervisor", "operator", "handler", "observer"}
    assert s.database_url.startswith("sqlite:////")  # resolved against the config's folder


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["app"].update(colour="red"), "app.colour: unknown key"),
        (lambda c: c.update(extra={}), "extra: unknown key"),
        (lambda c: c["time_limits"].update(handling_working_days=0), "time_limits.handling"),
        (lambda c: c["departments"][0].update(code="Urban Dept"), "departments.0.code"),
        (lambda c: c["departments"].append(dict(c["departments"][0])), "appears twice"),
        (lambda c: c["users"].append({"username": "x1", "role": "handler"}), "needs a department"),
        (lambda c: c["users"].append({"username": "x2", "role": "boss"}), "users.20.role"),
    ],
    ids=["unknown-key", "unknown-section", "bad-value", "bad-code", "duplicate", "handler", "role"],
)
def test_mistakes_are_named(change: object, message: str) -> None:
    raw = base_config()
    change(raw)  # type: ignore[operator]
    with pytest.raises(ConfigError) as err:
        settings_from_dict(raw, source="my.toml")
    assert "my.toml" in str(err.value) and message in str(err.value)


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("[app\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"c\.toml: not valid TOML"):
        load_settings(path)


def test_environment_overrides_database_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINSHENG_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert load_settings(ROOT / "config.toml").database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    "url",
    [
        "https://minsheng.example.gov.cn",
        "https://minsheng.example.gov.cn/",
        "http://127.0.0.1:5000",
        "https://gov.example.cn/minsheng",
        "http://[::1]:8080",
        "https://民生.中国",
        "HTTPS://Minsheng.Example.GOV.cn",
    ],
)
def test_a_sites_address_is_accepted_as_given(url: str) -> None:
    raw = base_config()
    raw["app"]["base_url"] = url
    assert settings_from_dict(raw).app.base_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("minsheng.example.gov.cn", "has no scheme: write it with http:// or https://"),
        ("ftp://minsheng.example.gov.cn", "the scheme must be http or https"),
        ("https://minsheng.example.gov.cn/track?lang=zh", "has a query"),
        ("https://minsheng.example.gov.cn/?", "has a query"),
        ("https://minsheng.example.gov.cn/#top", "has a fragment"),
        ("https://minsheng.example.gov.cn /", "contains a space"),
        (" https://minsheng.example.gov.cn", "contains a space"),
        ("https://minsheng.example.gov.cn\n", "contains a space"),
        ("https://minsheng.example.gov.cn\u3000", "contains a space"),  # a full-width space
        ("https://", "no valid host name"),
        ("https:///track", "no valid host name"),
        ("https://minsheng_example..cn", "no valid host name"),
        ("https://admin:pw@minsheng.example.gov.cn", "user name or password"),
        ("https://minsheng.example.gov.cn:99999", "port"),
        ("https://minsheng.example.gov.cn:http", "port"),
        ("", "is empty"),
    ],
)
def test_a_broken_site_address_stops_start_up_naming_the_key(url: str, message: str) -> None:
    """Every link in citizens' mails and SMS starts with base_url: a broken one is refused
    when the config is read, not found by citizens."""
    raw = base_config()
    raw["app"]["base_url"] = url
    with pytest.raises(ConfigError) as err:
        settings_from_dict(raw, source="my.toml")
    text = str(err.value)
    assert "my.toml" in text and "app.base_url" in text and message in text


def test_a_broken_site_address_in_the_config_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[app]\nbase_url = "www.example.gov.cn/minsheng"\n', encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert "c.toml" in str(err.value) and "app.base_url" in str(err.value)
    assert "https://www.example.gov.cn/minsheng" in str(err.value)  # what to write instead
