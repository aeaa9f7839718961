"""Faults in the masking of a case's group found by the red team (rt1), and their variants.

- The people of a case are those of every case reached through merges and follow-up links
  together: a follow-up of a case others were merged into, a follow-up of that follow-up
  and a case merged into a follow-up all mask the merged citizens, for observers' pages,
  their search and the stored masked text (kept at each change, and by migration 0039).
- A citizen's own landline written without its area code (8765 4321 for 01087654321), or
  with the extension after 转, is theirs: masked for observers, and never found by them.
- Staff find a case by a name its caller gave on a later call (a repeat call, a reopen),
  however long the name; observers do not.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select, update

from tests.integration.helpers import close_case, post_form, submit_complaint
from tests.integration.test_merged_privacy import _page
from tests.integration.test_operator_desk import _desk
from triage.models import Case
from triage.search import search_cases
from triage.search_index import (
    CaseText,
    SearchGram,
    case_rows,
    remask_all,
    remask_groups,
    write_rows,
)

A_NAME, A_PHONE = "欧阳建华", "13911112222"
B_NAME, B_PHONE = "司马小芳", "13933334444"
C_NAME, C_PHONE = "诸葛明亮", "13955556666"


def _merge(login_as: Any, number: str, into: str) -> None:
    r = post_form(
        login_as("supervisor"),
        f"/board/cases/{number}",
        f"/board/cases/{number}/merge",
        {"merge-target": into, "merge-reason": "同一路灯"},
    )
    assert r.status_code == 302


def _follow_up(login_as: Any, number: str, body: str) -> str:
    """A's caller calls again about closed case ``number``: the desk opens a follow-up."""
    r = _desk(
        login_as("operator"),
        {"phone": A_PHONE, "name": A_NAME, "about": f"follow:{number}", "body": body},
    )
    assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
    return r.headers["Location"].rsplit("/", 1)[-1]


def _masked_text(runtime: Any, number: str) -> str:
    with runtime.sessions() as s:
        return s.scalar(select(Case.masked_text).where(Case.tracking_number == number)) or ""


def _assert_hidden(login_as: Any, runtime: Any, number: str, shown: str, *names: str) -> None:
    """Observers read ``shown`` on case ``number`` but none of ``names``, and find the case
    by none of them; the stored masked text holds none of them either."""
    observer = login_as("observer")
    page = _page(observer, f"/board/cases/{number}")
    assert shown in page
    masked = _masked_text(runtime, number)
    for name in names:
        assert name not in page
        assert name not in masked
        assert number not in _page(observer, "/board/cases", q=name)


def _merged_pair(client: Any, login_as: Any, runtime: Any) -> tuple[str, str]:
    """B (司马小芳) merged into A (欧阳建华), and C (诸葛明亮) too; A closed."""
    a, _ = submit_complaint(client, "幸福路12号路灯不亮", name=A_NAME, phone=A_PHONE)
    b, _ = submit_complaint(client, "幸福路12号路灯坏了", name=B_NAME, phone=B_PHONE)
    c, _ = submit_complaint(client, "幸福路路灯夜里全黑", name=C_NAME, phone=C_PHONE)
    _merge(login_as, b, a)
    _merge(login_as, c, a)
    close_case(runtime, a)
    return a, b


def test_a_follow_up_of_a_merged_case_masks_the_citizens_merged_into_it(
    client: Any, login_as: Any, runtime: Any
) -> None:
    a, _b = _merged_pair(client, login_as, runtime)
    d = _follow_up(login_as, a, f"上次和{B_NAME}、{C_NAME}一起反映的幸福路12号路灯又不亮了。")
    _assert_hidden(login_as, runtime, d, "路灯又不亮了", B_NAME, C_NAME)
    # Staff still read and find them.
    supervisor = login_as("supervisor")
    assert B_NAME in _page(supervisor, f"/board/cases/{d}")
    assert d in _page(supervisor, "/board/cases", q=B_NAME)


def test_a_follow_up_of_a_follow_up_masks_them_too(
    client: Any, login_as: Any, runtime: Any
) -> None:
    a, _b = _merged_pair(client, login_as, runtime)
    d = _follow_up(login_as, a, "幸福路12号路灯又不亮了。")
    close_case(runtime, d)
    e = _follow_up(login_as, d, f"第三次来电：{B_NAME}家门口的路灯还是不亮。")
    _assert_hidden(login_as, runtime, e, "第三次来电", B_NAME)


def test_a_case_merged_into_a_follow_up_later_is_masked_on_the_case_it_follows(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """A's own letter names a neighbour; A is closed and followed up by D; the neighbour's
    complaint is then merged into D. A's masked text is rewritten with the merge."""
    a, _ = submit_complaint(
        client, f"幸福路12号路灯不亮，邻居{C_NAME}也看到了", name=A_NAME, phone=A_PHONE
    )
    close_case(runtime, a)
    d = _follow_up(login_as, a, "幸福路12号路灯又不亮了。")
    observer = login_as("observer")
    assert a in _page(observer, "/board/cases", q=C_NAME)  # nobody of A's group yet
    c, _ = submit_complaint(client, "幸福路12号路灯坏了", name=C_NAME, phone=C_PHONE)
    _merge(login_as, c, d)
    _assert_hidden(login_as, runtime, a, "路灯不亮", C_NAME)


def test_migration_0039_remasks_the_follow_ups_of_merged_cases(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """A follow-up stored masked as each case alone (the demo's bulk writer, code before
    0039): `remask_all` (the migration's work) masks the merged citizens in it, and
    `remask_groups` (the demo's) does too."""
    a, _b = _merged_pair(client, login_as, runtime)
    d = _follow_up(login_as, a, "幸福路12号路灯又不亮了。")
    close_case(runtime, d)
    e = _follow_up(login_as, d, f"第三次来电：{B_NAME}家门口的路灯还是不亮。")
    with runtime.engine.begin() as conn:
        row = conn.execute(select(Case.__table__).where(Case.tracking_number == e)).one()
        conn.execute(
            update(Case.__table__)
            .where(Case.id == row.id)
            .values(masked_text=f"{row.subject}\n{row.body}")
        )
        conn.execute(delete(SearchGram.__table__).where(SearchGram.__table__.c.case_id == row.id))
        alone = CaseText(
            case_id=row.id,
            tracking_number=row.tracking_number,
            subject=row.subject,
            body=row.body,
            contact_name=row.contact_name,
            contact_phone=row.contact_phone,
            contact_email=row.contact_email or "",
            department_id=row.department_id or 0,
        )
        write_rows(conn, ((g, row.id, f, alone.department_id) for g, f in case_rows(alone).items()))
    with runtime.sessions() as s:
        assert search_cases(s, B_NAME, masked=True).case_ids == [row.id]
    with runtime.engine.begin() as conn:
        read, changed = remask_all(conn)
        assert changed >= 1 and read >= 5
        assert remask_groups(conn) >= 5
    with runtime.sessions() as s:
        assert search_cases(s, B_NAME, masked=True).case_ids == []
        assert search_cases(s, "第三次来电", masked=True).case_ids == [row.id]
    assert B_NAME not in _masked_text(runtime, e)


def test_the_people_of_a_page_of_cases_cost_the_same_queries_whatever_their_number(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """A list page reads the people of its cases' groups: a few queries a link followed, the
    same for four cases as for forty (the walk is of all the cases together)."""
    from tests.integration.helpers import insert_case_row
    from tests.integration.test_dashboard import Queries
    from triage.case_people import people_by_case

    a, b = _merged_pair(client, login_as, runtime)
    d = _follow_up(login_as, a, "幸福路12号路灯又不亮了。")
    with runtime.sessions() as s, s.begin():
        for i in range(36):
            insert_case_row(s, number=f"MS-2026-9{i:05d}", phone=f"1390000{i:04d}")
    with runtime.sessions() as s:
        group = list(s.scalars(select(Case.id).where(Case.tracking_number.in_([a, b, d]))))
        plain = list(s.scalars(select(Case.id).where(Case.tracking_number.like("MS-2026-9%"))))
        assert len(plain) == 36
        with Queries(runtime.engine) as few:
            people = people_by_case(s, group)
        with Queries(runtime.engine) as many:
            assert people_by_case(s, group + plain)[group[0]] == people[group[0]]
    assert B_NAME in people[group[-1]].names and C_NAME in people[group[-1]].names
    assert many.n == few.n, (few.n, many.n)


# -- a citizen's own landline without its area code -------------------------------------------


def test_a_citizens_own_landline_without_its_area_code_is_masked_and_not_found(
    client: Any, login_as: Any
) -> None:
    number, _ = submit_complaint(
        client,
        "楼下餐馆油烟太大。白天请打8765 4321找我，或者回拨87654321。",
        name="钱多多",
        phone="010-87654321",
    )
    observer = login_as("observer")
    page = _page(observer, f"/board/cases/{number}")
    assert "楼下餐馆油烟太大" in page
    assert "8765 4321" not in page and "87654321" not in page
    for q in ("87654321", "8765 4321", "8765"):
        assert number not in _page(observer, "/board/cases", q=q)
    supervisor = login_as("supervisor")
    assert number in _page(supervisor, "/board/cases", q="8765 4321")


def test_a_landline_with_an_extension_is_masked_without_area_code_or_with_the_extension(
    client: Any, login_as: Any
) -> None:
    number, _ = submit_complaint(
        client,
        "楼下餐馆油烟太大。白天打8765 4321转8021，晚上打87654321-8021。",
        name="钱多多",
        phone="010-87654321转8021",
    )
    observer = login_as("observer")
    page = _page(observer, f"/board/cases/{number}")
    assert "楼下餐馆油烟太大" in page
    assert "8765 4321" not in page and "87654321" not in page
    for q in ("87654321", "8765 4321"):
        assert number not in _page(observer, "/board/cases", q=q)


# -- staff find a case by a name given on a later call ----------------------------------------


def test_staff_find_a_case_by_a_long_name_given_on_a_repeat_call(
    client: Any, login_as: Any
) -> None:
    number, _ = submit_complaint(client, "明德路路灯不亮已经一周", name="王小明", phone=A_PHONE)
    r = _desk(
        login_as("operator"),
        {"phone": A_PHONE, "name": "上官婉儿", "about": f"urge:{number}", "body": "还是不亮"},
    )
    assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
    supervisor = login_as("supervisor")
    for q in ("上官婉儿", "官婉儿", "上官婉"):
        assert number in _page(supervisor, "/board/cases", q=q), q
    assert number not in _page(login_as("observer"), "/board/cases", q="上官婉儿")


def test_staff_find_a_case_by_a_name_given_when_it_was_reopened(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _ = submit_complaint(client, "明德路路灯不亮已经一周", name="王小明", phone=A_PHONE)
    close_case(runtime, number)
    r = _desk(
        login_as("operator"),
        {"phone": A_PHONE, "name": "慕容复兴", "about": f"reopen:{number}", "body": "又不亮了"},
    )
    assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
    assert number in _page(login_as("supervisor"), "/board/cases", q="慕容复兴")
    assert number not in _page(login_as("observer"), "/board/cases", q="慕容复兴")


def test_migration_0039_masks_a_local_number_stored_unmasked(empty_url: str) -> None:
    """A case stored before 0039: its masked text and masked postings hold the citizen's
    own landline written without its area code. The upgrade masks and re-indexes it; a
    case with nothing to change is left as it was."""
    from alembic import command
    from sqlalchemy import select
    from sqlalchemy.orm import Session

    from tests.integration.helpers import insert_case_row
    from triage.models import Case
    from triage.search import search_cases
    from triage.search_index import MASKED_BODY, merge_rows, rebuild, text_grams
    from web.db import alembic_config, make_engine, upgrade

    body = "路灯坏了，白天请打8765 4321找我"
    engine = make_engine(empty_url)
    upgrade(engine)
    with Session(engine) as s, s.begin():
        insert_case_row(s, number="MS-2026-100001", body=body, phone="01087654321")
        insert_case_row(
            s, number="MS-2026-100002", body="楼道灯坏了", masked_text="来电\n楼道灯坏了"
        )
        rebuild(s)
        # As the code before 0039 masked and indexed it.
        s.execute(Case.__table__.update().where(Case.id == 1).values(masked_text=f"来电\n{body}"))
        merge_rows(s, [(g, 1, MASKED_BODY, 0) for g in text_grams(body)])
    with Session(engine) as s:
        assert search_cases(s, "87654321", masked=True).case_ids == [1]
    command.downgrade(alembic_config(engine), "0038")
    upgrade(engine)
    with Session(engine) as s:
        assert search_cases(s, "87654321", masked=True).case_ids == []
        assert search_cases(s, "8765 4321", masked=True).case_ids == []
        assert search_cases(s, "87654321", masked=False).case_ids == [1]
        masked = s.scalar(select(Case.masked_text).where(Case.id == 1))
        assert "8765 4321" not in masked and "路灯坏了" in masked
        assert s.scalar(select(Case.masked_text).where(Case.id == 2)) == "来电\n楼道灯坏了"
    engine.dispose()
