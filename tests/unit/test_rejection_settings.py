"""The public reasons for not accepting a complaint are configuration, checked at start-up."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import ROOT, base_config
from web.settings import ConfigError, load_settings, settings_from_dict


def test_shipped_reasons_include_a_referral() -> None:
    outcomes = load_settings(ROOT / "config.toml").rejection_outcomes()
    assert {"spam", "duplicate", "not_enough_information", "not_government", "not_ours"} <= set(
        outcomes
    )
    assert outcomes["not_ours"].refer and not outcomes["spam"].refer
    assert all(o.label and o.label_en for o in outcomes.values())


def test_the_list_can_be_changed_and_defaults_without_it() -> None:
    raw = base_config()
    raw["rejection_reasons"] = [
        {"code": "other_county", "label": "属外县事务", "label_en": "Another county", "refer": True}
    ]
    outcomes = settings_from_dict(raw).rejection_outcomes()
    assert list(outcomes) == ["other_county"] and outcomes["other_county"].refer
    del raw["rejection_reasons"]
    assert "not_ours" in settings_from_dict(raw).rejection_outcomes()


@pytest.mark.parametrize(
    ("reasons", "message"),
    [
        ([], "at least one"),
        ([{"code": "spam", "label": "广告"}, {"code": "spam", "label": "垃圾"}], "appears twice"),
        ([{"code": "Spam!", "label": "广告"}], "rejection_reasons.0.code"),
        ([{"code": "spam", "label": ""}], "rejection_reasons.0.label"),
        ([{"code": "spam", "label": "广告", "public": True}], "rejection_reasons.0.public"),
    ],
    ids=["empty", "duplicate", "bad-code", "no-label", "unknown-key"],
)
def test_mistakes_are_named(reasons: list[dict[str, Any]], message: str) -> None:
    raw = base_config()
    raw["rejection_reasons"] = reasons
    with pytest.raises(ConfigError) as err:
        settings_from_dict(raw, source="my.toml")
    assert "my.toml" in str(err.value) and message in str(err.value)
