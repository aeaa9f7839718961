"""Observers and external supervisors (personal data masked) find a case by the replies that
went out, as its page shows them to them: masked (no caller's name or phone), and not a draft
waiting for the head's sign-off until it is signed off; staff find drafts too. Migration 0037
re-masks and re-indexes the cases replied before it. Both databases."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from tests.conftest import make_settings
from tests.integration.helpers import insert_case_row
from tests.integration.test_extension_requests import case_of, dispatched
from tests.integration.test_sign_off_flow import reply, sign
from triage.models import Case, CaseReply, ReplyState
from triage.search import search_cases
from triage.search_index import MASKED_REPLY, SearchGram, mask_replies, rebuild
from web.db import make_engine, upgrade

# The complainant of `dispatched` is 王小明, 13812345678 (tests.integration.helpers).
DRAFT = "经查系地下电缆老化，已安排维修班组更换，王小明先生可拨打13812345678查询进度。"


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, supervision={"reply_sign_off": True})


def _numbers(client: Any, q: str) -> list[str]:
    r = client.get("/board/cases", query_string={"q": q})
    assert r.status_code == 200
    return re.findall(r'data-case="([^"]+)"', r.get_data(as_text=True))


def test_observers_find_a_case_by_its_sent_reply_masked(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _ = dispatched(client, login_as, runtime)
    urban = login_as("urban")
    reply(urban, number, DRAFT)
    observer, supervisor = login_as("observer"), login_as("supervisor")
    # A draft waiting for the head: staff find it, observers (who are not shown it) do not.
    for q in ("电缆老化", "电缆", "缆"):
        assert _numbers(supervisor, q) == [number], q
        assert _numbers(observer, q) == [], q
    with runtime.sessions() as s:
        assert search_cases(s, "缆", masked=True).case_ids == []

    assert sign(login_as("urban-head"), number, case_of(runtime, number).pending_draft.id)
    page = observer.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "电缆老化" in page and "王小明" not in page and "13812345678" not in page
    # Four and two characters (through the index), one (the scan of the masked text).
    for q in ("电缆老化", "电缆", "缆", "电缆 维修班组"):
        assert _numbers(observer, q) == [number], q
        assert _numbers(supervisor, q) == [number], q
    # Not by what the page masks in the reply.
    for q in ("王小明", "小明", "13812345678", "1381234", "查询进度 王小明"):
        assert _numbers(observer, q) == [], q
        assert _numbers(supervisor, q) == [number], q
    # The result's excerpt is the reply as the page shows it: masked.
    found = observer.get("/board/cases", query_string={"q": "电缆老化"}).get_data(as_text=True)
    assert "<mark>电缆老化</mark>" in found
    assert "王小明" not in found and "13812345678" not in found
    with runtime.sessions() as s:
        masked = s.scalar(select(Case.masked_text).where(Case.tracking_number == number))
        assert "电缆老化" in masked and "王小明" not in masked and "13812345678" not in masked
        assert masked.splitlines()[0] == "楼道堵塞"  # the subject first: titles read it
        assert search_cases(s, "缆", masked=True).case_ids == [case_of(runtime, number).id]


def test_a_returned_draft_stays_unseen_by_observers(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _ = dispatched(client, login_as, runtime)
    reply(login_as("urban"), number, DRAFT)
    draft_id = case_of(runtime, number).pending_draft.id
    r = sign(login_as("urban-head"), number, draft_id, "return", **{"return-note": "请补充工期"})
    assert r.status_code == 302
    assert case_of(runtime, number).replies[0].state == ReplyState.RETURNED
    assert _numbers(login_as("observer"), "电缆老化") == []
    assert _numbers(login_as("supervisor"), "电缆老化") == [number]
    # The head's own reply goes out at once: found by observers with no sign-off.
    reply(login_as("urban-head"), number, "路灯已于周五修复，感谢监督。")
    assert _numbers(login_as("observer"), "感谢监督") == [number]
    assert _numbers(login_as("observer"), "电缆老化") == []


def test_a_reply_added_by_its_case_id_is_masked_too(client: Any, runtime: Any) -> None:
    """A reply written without the case's collection (by its case_id): the flush listeners
    still put it, masked, into the masked text and the postings."""
    from tests.integration.helpers import submit_complaint

    number, _ = submit_complaint(client, "明德路路灯坏了一个月，晚上很黑。")
    with runtime.sessions() as s, s.begin():
        case_id = s.scalar(select(Case.id).where(Case.tracking_number == number))
        s.add(CaseReply(case_id=case_id, at=datetime.now(UTC), body=DRAFT, state="sent"))
    with runtime.sessions() as s:
        assert search_cases(s, "电缆老化", masked=True).case_ids == [case_id]
        assert search_cases(s, "王小明", masked=True).case_ids == []
        assert "电缆老化" in s.scalar(select(Case.masked_text).where(Case.id == case_id))


def test_migration_0037_masks_and_indexes_the_replies_sent_before_it(empty_url: str) -> None:
    """Cases replied before this code: neither their masked text nor their masked postings
    held their replies. The upgrade adds the sent ones (masked), not drafts; the downgrade
    takes them out again."""
    from alembic import command

    from web.db import alembic_config

    engine = make_engine(empty_url)
    upgrade(engine)
    now = datetime.now(UTC).replace(tzinfo=None)
    with Session(engine) as s, s.begin():
        for n in (1, 2):
            insert_case_row(
                s,
                number=f"MS-2026-12345{n}",
                status="replied",
                phone="13812345678",
                masked_text="来电\n楼道灯坏了",
            )
        replies = CaseReply.__table__
        s.execute(
            insert(replies).values(case_id=1, at=now.replace(tzinfo=UTC), body=DRAFT, state="sent")
        )
        s.execute(
            insert(replies).values(
                case_id=2,
                at=now.replace(tzinfo=UTC),
                body="草稿：正在协调供电公司",
                state="pending_sign_off",
            )
        )
    with Session(engine) as s, s.begin():
        rebuild(s)  # as this code indexes them
        assert mask_replies(s) == 1
        bits = s.scalars(select(SearchGram.fields).where(SearchGram.case_id == 1)).all()
        assert any(f & MASKED_REPLY for f in bits)
        assert "电缆老化" in s.scalar(select(Case.masked_text).where(Case.id == 1))
    command.downgrade(alembic_config(engine), "0036")
    with Session(engine) as s:
        # As the code before it left them: no reply in the masked text or masked postings.
        assert s.scalar(select(Case.masked_text).where(Case.id == 1)) == "来电\n楼道灯坏了"
        bits = s.scalars(select(SearchGram.fields).where(SearchGram.case_id == 1)).all()
        assert bits and not any(f & MASKED_REPLY for f in bits)
        assert search_cases(s, "电缆老化", masked=True).case_ids == []
        assert search_cases(s, "电缆老化", masked=False).case_ids == [1]
    upgrade(engine)
    with Session(engine) as s:
        masked = s.scalar(select(Case.masked_text).where(Case.id == 1))
        assert masked.startswith("来电\n楼道灯坏了\n") and "电缆老化" in masked
        assert "王小明" not in masked and "13812345678" not in masked
        assert s.scalar(select(Case.masked_text).where(Case.id == 2)) == "来电\n楼道灯坏了"
        for q in ("电缆老化", "电缆", "缆"):
            assert search_cases(s, q, masked=True).case_ids == [1], q
        assert search_cases(s, "王小明", masked=True).case_ids == []
        assert search_cases(s, "供电公司", masked=True).case_ids == []
        assert search_cases(s, "供电公司", masked=False).case_ids == [2]
    # The postings it merged in are what a rebuild writes.
    postings = select(SearchGram.gram, SearchGram.case_id, SearchGram.fields)
    with Session(engine) as s, s.begin():
        upgraded = set(s.execute(postings).all())
        rebuild(s)
        assert set(s.execute(postings).all()) == upgraded
    engine.dispose()
