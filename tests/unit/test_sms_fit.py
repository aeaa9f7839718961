"""Text messages shortened to `[sms] max_length` (issue #9, a red-team tester's fault): the
link, the query code and the tracking number are never cut; a max_length the templates
cannot fit with them whole is refused when the settings load."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import make_settings
from triage.sms import fit
from web.settings import ConfigError, SmsSettings

OFFICE = "民声区机关效能建设办公室"
NUMBER = "MS-2026-000001"
CODE = "8VN3TG"
SATISFACTION = "https://minsheng.example.gov.cn/satisfaction/12-34-abcdef.AAAAAAAAAAAAAAAAAAAAAA"
TRACK = "https://minsheng.example.gov.cn/track?number=MS-2026-000001"
REPLIED = SmsSettings().replied_template
RECEIVED = SmsSettings().received_template
REPLY = "已安排维修班组于本周五前更换明德路路灯灯具。" * 5


@pytest.mark.parametrize("max_length", [120, 130, 150, 200])
def test_a_long_reply_is_shortened_and_the_satisfaction_link_kept_whole(max_length: int) -> None:
    """The reply (then the office's name) gives way; the link the citizen answers through
    is whole at every length the settings accept for it."""
    text = fit(
        REPLIED, max_length, office=OFFICE, tracking_number=NUMBER, reply=REPLY, link=SATISFACTION
    )
    assert len(text) <= max_length, text
    assert text.endswith(SATISFACTION) and NUMBER in text and "…" in text


def test_a_text_that_fits_is_sent_as_it_is() -> None:
    text = fit(REPLIED, 300, office=OFFICE, tracking_number=NUMBER, reply=REPLY, link=TRACK)
    assert REPLY in text and OFFICE in text and text.endswith(TRACK)


def test_the_link_and_query_code_are_never_cut() -> None:
    """Too short for the link and the codes: they stay whole (the settings refuse such a
    max_length; a text made anyway goes as several segments rather than with a dead link)."""
    text = fit(RECEIVED, 70, office=OFFICE, tracking_number=NUMBER, query_code=CODE, link=TRACK)
    assert TRACK in text and f"查询码{CODE}" in text and NUMBER in text


def test_a_max_length_too_short_for_the_links_is_refused_naming_the_minimum(
    tmp_path: Path,
) -> None:
    """[sms] max_length = 70 with a real site address cannot hold the 'received' notice's
    /track link: refused at load, naming the setting and the least length that works."""
    app = {"base_url": "https://minsheng.example.gov.cn", "secret_key": "test-key"}
    sms = {"url": "https://sms.example.gov.cn/api/send", "max_length": 70}
    with pytest.raises(ConfigError) as refused:
        make_settings(tmp_path, "sqlite://", sms=sms, app=app)
    message = str(refused.value)
    assert "sms.max_length = 70" in message and "sms.received_template" in message
    least = int(message.split("at least ", 1)[1].split(" ", 1)[0])
    settings = make_settings(tmp_path, "sqlite://", sms={**sms, "max_length": least}, app=app)
    assert settings.sms.max_length == least
    # The office's longest satisfaction link fits whole at that length too.
    text = fit(
        settings.sms.replied_template,
        least,
        office=settings.app.office_name,
        tracking_number=NUMBER,
        reply=REPLY,
        link=f"https://minsheng.example.gov.cn/satisfaction/{'9' * 8}-{'9' * 8}-zzzzzz.{'A' * 22}",
    )
    assert len(text) <= least


def test_sms_off_accepts_any_max_length(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "sqlite://", sms={"url": "", "max_length": 70})
    assert settings.sms.max_length == 70
