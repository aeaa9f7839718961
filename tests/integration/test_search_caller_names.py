"""A name the caller gives on a later call (a repeat call, a reopen) is personal data like the
contact's: the case page masks it for observers, so their search must not find the case by it,
while staff do find the case by it; migration 0035 re-masks cases stored before."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from tests.conftest import csrf_from
from tests.integration.helpers import insert_case_row, submit_complaint
from triage.models import Case, CaseEvent
from triage.search import search_cases
from web.db import make_engine, upgrade

PHONE = "13812345678"


def _urge(operator: Any, number: str, name: str) -> None:
    page = operator.get("/board/calls/new").get_data(as_text=True)
    token = re.search(r'name="token"[^>]*value="([^"]+)"', page)
    r = operator.post(
        "/board/calls/new",
        data={
            "csrf_token": csrf_from(page),
            "token": token.group(1) if token else "",
            "phone": PHONE,
            "name": name,
            "kind": "complaint",
            "subject": "催办",
            "body": f"我是{name}，路灯还是不亮",
            "about": f"urge:{number}",
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)


def _found(client: Any, q: str) -> str:
    r = client.get("/board/cases", query_string={"q": q})
    assert r.status_code == 200
    return r.get_data(as_text=True)


def test_observers_do_not_find_a_case_by_a_name_given_on_a_later_call(
    client: Any, login_as: Any, runtime: Any
) -> None:
    # The later caller's name is also written in the complaint's own text (a neighbour who
    # signed it): masked wherever the case page masks it.
    number, _ = submit_complaint(
        client, "明德路路灯不亮已经一周，邻居欧阳娜娜也反映过", name="王小明", phone=PHONE
    )
    _urge(login_as("operator"), number, "欧阳娜娜")
    observer = login_as("observer")
    page = observer.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "欧阳娜娜" not in page and "路灯" in page
    assert number not in _found(observer, "欧阳娜娜")
    assert number not in _found(observer, "阳娜")
    assert number in _found(observer, "路灯不亮")
    # Staff who see names find the case by the name the caller gave.
    assert number in _found(login_as("supervisor"), "欧阳娜娜")
    with runtime.sessions() as s:
        masked = s.scalar(select(Case.masked_text).where(Case.tracking_number == number))
        assert "欧阳娜娜" not in masked and "路灯" in masked
        # The short-query scan reads the masked text: nothing of the name either.
        assert search_cases(s, "娜娜", masked=True).case_ids == []


def test_migration_0035_masks_names_given_before_it(empty_url: str) -> None:
    """A case whose caller gave another name before this code: its masked text and masked
    postings held the name; the upgrade masks it, and the downgrade leaves it masked."""
    from alembic import command

    from triage.search_index import rebuild
    from web.db import alembic_config

    engine = make_engine(empty_url)
    upgrade(engine)
    now = datetime.now(UTC).replace(tzinfo=None)
    with Session(engine) as s, s.begin():
        insert_case_row(
            s,
            body="楼道灯坏了，邻居欧阳娜娜也说过",
            masked_text="来电\n楼道灯坏了，邻居欧阳娜娜也说过",
        )
        s.execute(
            insert(CaseEvent.__table__).values(
                case_id=1,
                at=now.replace(tzinfo=UTC),
                action="urged",
                actor_name="op",
                reason="再次来电",
                detail={"caller_name": "欧阳娜娜"},
                public=False,
            )
        )
    command.downgrade(alembic_config(engine), "0034")
    with Session(engine) as s, s.begin():
        # As this code's predecessor left it: the name in the masked text.
        s.execute(
            text("UPDATE cases SET masked_text = :m"),
            {"m": "来电\n楼道灯坏了，邻居欧阳娜娜也说过"},
        )
        rebuild(s)
    upgrade(engine)
    with Session(engine) as s:
        assert "欧阳娜娜" not in s.scalar(text("SELECT masked_text FROM cases"))
        assert search_cases(s, "欧阳娜娜", masked=True).case_ids == []
        assert search_cases(s, "欧阳娜娜", masked=False).case_ids == [1]
        assert search_cases(s, "楼道灯", masked=True).case_ids == [1]
    engine.dispose()


def test_the_callers_other_cases_and_observations_mask_that_name_too(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """Wherever an observer reads a case's text outside its page: the caller's other cases
    listed on a case page, and an observation on the case."""
    from triage.models import Observation
    from triage.observations import masked_texts

    first, _ = submit_complaint(
        client, "路灯不亮，欧阳娜娜家门口一片漆黑", subject="欧阳娜娜家门口路灯", phone=PHONE
    )
    second, _ = submit_complaint(client, "小区门口垃圾没人清运", subject="垃圾清运", phone=PHONE)
    _urge(login_as("operator"), first, "欧阳娜娜")
    observer = login_as("observer")
    page = observer.get(f"/board/cases/{second}").get_data(as_text=True)
    assert first in page and "家门口路灯" in page  # listed among the caller's cases
    assert "欧阳娜娜" not in page
    with runtime.sessions() as s:
        case = s.scalars(select(Case).where(Case.tracking_number == first)).one()
        note = Observation(case=case, body="已核实欧阳娜娜反映的情况", answer="已联系欧阳娜娜")
        body, answer = masked_texts(note)
        assert "欧阳娜娜" not in body + answer and "已核实" in body
