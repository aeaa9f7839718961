"""A caller is their main number, on both databases: with ``[app] area_code = "010"`` the
calls from 010-87654321, 8765 4321, 010-87654321 转 123 and 87654321-123 are one caller's,
on the case page's history (with which contact of the caller it is) and in the operator's
lookup as the number is typed; the extension stays on the case for the call back; other
numbers and the same digits in another area are other callers."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import make_settings
from tests.integration.helpers import submit_complaint
from triage.models import Case


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(
        tmp_path,
        db_url,
        app={"area_code": "010"},
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


def _panel(page: str) -> str:
    start = page.index('id="caller-history"')
    return page[start : page.index("</section>", start)]


def test_local_numbers_and_extensions_are_the_callers_main_number(
    client: Any, login_as: Any, runtime: Any
) -> None:
    first, _ = submit_complaint(client, "明德路路灯不亮。", phone="010-87654321")
    local, _ = submit_complaint(client, "河道有异味。", phone="8765 4321")
    extension, _ = submit_complaint(client, "公交站牌倒了。", phone="010-87654321 转 123")
    both, _ = submit_complaint(client, "小区门口积水。", phone="87654321-123")
    neighbour, _ = submit_complaint(client, "噪音扰民。", phone="010-87654322")
    shanghai, _ = submit_complaint(client, "井盖缺失。", phone="021-87654321")

    supervisor = login_as("supervisor")
    page = supervisor.get(f"/board/cases/{both}").get_data(as_text=True)
    panel = _panel(page)
    assert first in panel and local in panel and extension in panel
    assert neighbour not in panel and shanghai not in panel
    assert "第4次" in page  # the caller's fourth contact
    page = supervisor.get(f"/board/cases/{local}?lang=en").get_data(as_text=True)
    assert first in _panel(page) and both in _panel(page)
    # The extension is kept for whoever calls back.
    contact = re.search(r'id="case-contact">(.*?)</dd>', page, re.S).group(1)  # type: ignore[union-attr]
    assert "87654321" in contact
    page = supervisor.get(f"/board/cases/{extension}").get_data(as_text=True)
    contact = re.search(r'id="case-contact">(.*?)</dd>', page, re.S).group(1)  # type: ignore[union-attr]
    assert "01087654321-123" in contact
    # The other callers have no history with this one.
    for other in (neighbour, shanghai):
        assert 'id="caller-history"' not in supervisor.get(f"/board/cases/{other}").get_data(
            as_text=True
        )

    # The desk, as the operator types the number as the caller says it.
    operator = login_as("operator")
    for typed in ("8765 4321", "010 8765 4321 ext. 9", "(010)87654321-123"):
        found = operator.get("/board/calls/history", query_string={"phone": typed}).get_json()
        assert found["valid"] is True and found["total"] == 4, (typed, found)
        assert {c["number"] for c in found["cases"]} == {first, local, extension, both}
    found = operator.get("/board/calls/history", query_string={"phone": "87654322"}).get_json()
    assert [c["number"] for c in found["cases"]] == [neighbour]

    with runtime.sessions() as s:
        keys = dict(s.execute(select(Case.tracking_number, Case.caller_key)).all())
    assert keys[first] == keys[local] == keys[extension] == keys[both]
    assert len({keys[first], keys[neighbour], keys[shanghai]}) == 3


def test_migration_0026_keys_old_cases_again_by_their_main_number(
    client: Any, runtime: Any
) -> None:
    """Cases keyed before the change (by the whole number: 87654321, 01087654321-123) lose
    their keys in migration 0026 and get the main number's from `minsheng init`'s backfill;
    a mobile's key is left alone; the downgrade keeps the keys."""
    from alembic import command

    from triage.callers import backfill_caller_keys
    from web.db import alembic_config, upgrade

    numbers = [
        submit_complaint(client, body, phone=phone)[0]
        for body, phone in (
            ("明德路路灯不亮。", "010-87654321"),
            ("河道有异味。", "8765 4321"),
            ("公交站牌倒了。", "010-87654321 转 123"),
            ("噪音扰民。", "13800138000"),
        )
    ]
    engine = runtime.engine
    command.downgrade(alembic_config(engine), "0025")
    with runtime.sessions() as s, s.begin():
        keys = dict(s.execute(select(Case.tracking_number, Case.caller_key)).all())
        mobile_key = keys[numbers[3]]
        # As registered before: each spelling its own key.
        for i, number in enumerate(numbers[:3]):
            s.execute(
                Case.__table__.update()
                .where(Case.tracking_number == number)
                .values(caller_key=f"old{i}", caller_alt_key=None)
            )
    upgrade(engine)
    with runtime.sessions() as s:
        keys = dict(s.execute(select(Case.tracking_number, Case.caller_key)).all())
    assert keys[numbers[0]] == "old0"  # 01087654321: the main number already
    assert keys[numbers[1]] is None and keys[numbers[2]] is None
    assert keys[numbers[3]] == mobile_key
    with runtime.sessions() as s, s.begin():
        assert backfill_caller_keys(s, runtime.secret, area_code="010") == 2
    with runtime.sessions() as s:
        keys = dict(s.execute(select(Case.tracking_number, Case.caller_key)).all())
    assert keys[numbers[1]] == keys[numbers[2]] != keys[numbers[3]]
    # Down and up again: cleared again (the migration cannot tell new keys from old), and
    # `minsheng init` gives them back the same.
    command.downgrade(alembic_config(engine), "0025")
    upgrade(engine)
    with runtime.sessions() as s, s.begin():
        assert backfill_caller_keys(s, runtime.secret, area_code="010") == 2
    with runtime.sessions() as s:
        assert dict(s.execute(select(Case.tracking_number, Case.caller_key)).all()) == keys


def test_a_call_import_keys_its_callers_by_the_main_number_too(
    client: Any, runtime: Any, config_file: Path, tmp_path: Path
) -> None:
    """The call centre's export (the helper process works the keys out) and the web form
    agree: a local number and an extension in the export are the web form's caller."""
    from tests.integration.test_call_import import cli_json, write_csv

    text = config_file.read_text(encoding="utf-8")
    assert 'area_code = ""' in text
    text = text.replace('area_code = ""', 'area_code = "010"')
    # The app's secret (tests/conftest.make_settings): the keys of both are comparable.
    text = text.replace('secret_key = ""', 'secret_key = "test-key"', 1)
    config_file.write_text(text, "utf-8")
    web, _ = submit_complaint(client, "明德路路灯不亮。", phone="010-87654321")
    rows = [
        ["GD1", "8765 4321", "2026/11/20 9:05", "60", "河道有异味", "王芳", "", "", "投诉"],
        ["GD2", "010-87654321转123", "2026/11/20 9:10", "60", "站牌倒了", "王芳", "", "", "投诉"],
        ["GD3", "021-87654321", "2026/11/20 9:15", "60", "井盖缺失", "王芳", "", "", "投诉"],
    ]
    out = cli_json(config_file, str(write_csv(tmp_path / "calls.csv", rows)))
    assert out["registered"] == 3, out
    with runtime.sessions() as s:
        keys = dict(s.execute(select(Case.external_id, Case.caller_key)).all())
        web_key = s.scalar(select(Case.caller_key).where(Case.tracking_number == web))
        phones = dict(s.execute(select(Case.external_id, Case.contact_phone)).all())
    assert keys["GD1"] == keys["GD2"] == web_key != keys["GD3"]
    assert phones["GD2"] == "01087654321-123"  # the extension kept for the call back
