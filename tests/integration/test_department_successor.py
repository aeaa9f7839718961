"""A case of a deactivated department that comes back for rework (an unsatisfied return
visit, manual or by the satisfaction link) goes to the department that took the work over,
following the chain when that one was deactivated in turn, or to the triage queue when none
did; never stays in a department no handler sees. SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select, update

from tests.conftest import login, make_settings
from tests.integration.helpers import flashes, post_form
from tests.integration.test_kanban import _case, _replied_and_visited
from tests.integration.test_satisfaction import answer_link, replied_case
from triage import staff
from triage.models import Department, Status, User

FORM = {"name": "区住房和城乡建设局", "name_en": "Housing", "email": "", "staff": "move"}


def _deactivate_urban(login_as: Any, successor: str = "environment") -> None:
    admin = login_as("admin")
    r = post_form(
        admin,
        "/admin/departments/urban",
        "/admin/departments/urban",
        {**FORM, "successor": successor},
    )
    assert r.status_code == 302, r.get_data(as_text=True)[:500]


def _rework(login_as: Any, number: str) -> Any:
    supervisor = login_as("supervisor")
    return post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/rework",
        {"rework-reason": "市民不满意，问题未解决"},
    )


def test_a_reworked_case_of_a_deactivated_department_goes_to_its_successor(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number = _replied_and_visited(client, login_as, runtime, "unsatisfied", "no")
    _deactivate_urban(login_as)
    with runtime.sessions() as s:
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        env_id = s.scalar(select(Department.id).where(Department.code == "environment"))
        assert not urban.active and urban.successor_id == env_id
    supervisor = login_as("supervisor")
    r = post_form(
        supervisor,
        f"/board/cases/{number}",
        f"/board/cases/{number}/rework",
        {"rework-reason": "市民不满意，问题未解决"},
    )
    assert r.status_code == 302
    said = flashes(supervisor.get(r.headers["Location"]).get_data(as_text=True))
    assert any("已停用" in f and "重办" in f for f in said), said
    case = _case(runtime, number)
    assert case.department.code == "environment"
    assert case.status in (Status.ASSIGNED, Status.IN_PROGRESS)
    assert [e.action for e in case.events[-2:]] == ["reworked", "transferred"]
    assert case.rework_count == 1 and case.due_at is not None
    # Both the moved urban handler and environment's see it, on the case page and the board.
    for name in ("urban", "environment"):
        handler = login_as(name)
        page = handler.get(f"/board/cases/{number}")
        assert page.status_code == 200
        assert "已停用" in page.get_data(as_text=True)  # the transfer's reason on the timeline
        assert number in handler.get("/board/kanban").get_data(as_text=True)


def test_rework_follows_the_chain_of_successors(client: Any, login_as: Any, runtime: Any) -> None:
    number = _replied_and_visited(client, login_as, runtime, "unsatisfied", "no")
    _deactivate_urban(login_as, "environment")
    # Later environment is deactivated in turn, into transport.
    admin = login_as("admin")
    r = post_form(
        admin,
        "/admin/departments/environment",
        "/admin/departments/environment",
        {
            "name": "区生态环境局",
            "name_en": "",
            "email": "",
            "staff": "move",
            "successor": "transport",
        },
    )
    assert r.status_code == 302
    page = login_as("admin").get("/admin/departments/urban").get_data(as_text=True)
    assert re.search(r'id="department-successor">[^<]*区交通运输局', page)  # transport's name
    assert _rework(login_as, number).status_code == 302
    case = _case(runtime, number)
    assert case.department.code == "transport" and case.events[-1].action == "transferred"
    assert number in login_as("transport").get("/board/kanban").get_data(as_text=True)


def test_rework_with_no_successor_goes_to_the_triage_queue(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number = _replied_and_visited(client, login_as, runtime, "unsatisfied", "no")
    # The page asks who takes over a replied case even when nothing else is to hand over.
    with runtime.sessions() as s:
        s.execute(
            update(User)
            .where(User.username.in_(("urban", "urban-head")))
            .values(
                department_id=s.scalar(
                    select(Department.id).where(Department.code == "environment")
                )
            )
        )
        s.commit()
    page = login_as("admin").get("/admin/departments/urban").get_data(as_text=True)
    assert 'id="rework-goes"' in page and 'name="successor"' in page
    # A department deactivated before successors were recorded (or with nothing to hand).
    with runtime.sessions() as s:
        s.execute(update(Department).where(Department.code == "urban").values(active=False))
        s.commit()
    assert _rework(login_as, number).status_code == 302
    case = _case(runtime, number)
    assert case.status == Status.TRIAGE and case.department is None
    assert [e.action for e in case.events[-2:]] == ["reworked", "requeued"]
    page = login_as("admin").get("/admin/departments/urban").get_data(as_text=True)
    assert re.search(r'id="department-successor">[^<]*待分派', page)
    supervisor = login_as("supervisor")
    assert number in supervisor.get("/board/queue").get_data(as_text=True)
    page = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    assert "部门已停用" in page  # the requeue, labelled on the timeline


def test_a_department_with_nothing_in_hand_still_records_its_successor(
    login_as: Any, runtime: Any
) -> None:
    with runtime.sessions() as s:
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        env = s.scalar(select(Department).where(Department.code == "environment"))
        s.execute(update(User).where(User.department_id == urban.id).values(active=False))
        admin = s.scalar(select(User).where(User.username == "admin"))
        staff.hand_over(s, urban, env, "move", admin, datetime.now(UTC))
        assert urban.successor_id == env.id
        # Reactivated, it is its own again.
        staff.change_department(s, urban, urban.name, "", "", True)
        assert urban.successor_id is None


def test_the_satisfaction_links_rework_goes_to_the_successor(tmp_path: Path, db_url: str) -> None:
    from web import create_app

    app = create_app(
        make_settings(
            tmp_path,
            db_url,
            satisfaction={"unsatisfied": "rework"},
            classifier={"auto_route": False, "model_dir": str(tmp_path / "m")},
        ),
        TESTING=True,
    )
    rt = app.extensions["minsheng"]
    try:
        number, path = replied_case(app.test_client(), lambda u: login(app.test_client(), u), rt)
        _deactivate_urban(lambda u: login(app.test_client(), u))
        r = answer_link(app.test_client(), path, solved="no", satisfaction="unsatisfied")
        assert r.status_code == 200
        case = _case(rt, number)
        assert case.department.code == "environment" and case.rework_count == 1
        assert [e.action for e in case.events[-2:]] == ["reworked", "transferred"]
    finally:
        rt.engine.dispose()


def test_an_account_is_not_reactivated_into_an_inactive_department(
    login_as: Any, runtime: Any
) -> None:
    with runtime.sessions() as s:
        s.execute(update(Department).where(Department.code == "urban").values(active=False))
        s.execute(update(User).where(User.username == "urban").values(active=False))
        uid = s.scalar(select(User.id).where(User.username == "urban"))
        s.commit()
    admin = login_as("admin")
    r = post_form(admin, f"/admin/users/{uid}", f"/admin/users/{uid}/reactivate", {})
    assert r.status_code == 409
    said = flashes(r.get_data(as_text=True))
    assert any("urban" in f and "已停用" in f and "调到" in f for f in said), said
    with runtime.sessions() as s:
        assert not s.scalar(select(User.active).where(User.id == uid))


def test_migration_0020_adds_and_drops_the_successor(empty_url: str) -> None:
    from alembic import command
    from sqlalchemy import inspect

    from web.db import alembic_config, make_engine, upgrade

    engine = make_engine(empty_url)
    try:
        upgrade(engine, "0020")
        assert "successor_id" in {c["name"] for c in inspect(engine).get_columns("departments")}
        command.downgrade(alembic_config(engine), "0019")
        assert "successor_id" not in {c["name"] for c in inspect(engine).get_columns("departments")}
        upgrade(engine)
    finally:
        engine.dispose()


def test_a_failed_spot_check_reopens_into_the_successor(login_as: Any, runtime: Any) -> None:
    from tests.integration.test_spot_checks import make_closed
    from triage.models import SpotCheck

    (number,) = make_closed(runtime, [2])
    _deactivate_urban(login_as)
    office = login_as("supervisor")
    r = post_form(office, "/board/spot-checks", "/board/spot-checks/draw", {"draw-seed": "abc"})
    assert r.status_code == 302
    with runtime.sessions() as s:
        check_id = s.scalar(select(SpotCheck.id))
    prefix = f"check{check_id}"
    r = post_form(
        office,
        "/board/spot-checks",
        f"/board/spot-checks/{check_id}",
        {f"{prefix}-method": "visit", f"{prefix}-result": "failed", f"{prefix}-note": "杂物仍在"},
    )
    assert r.status_code == 302
    case = _case(runtime, number)
    assert case.department.code == "environment" and case.rework_count == 1
    assert [e.action for e in case.events[-2:]] == ["spot_check_failed", "transferred"]
    assert number in login_as("environment").get("/board/kanban").get_data(as_text=True)


def test_an_inactive_departments_successor_can_be_changed_audited(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """After the deactivation the admin changes who takes over (a wrong first choice): a
    later rework goes to the new one; the change is in the admin log; an inactive
    department or a loop is refused."""
    number = _replied_and_visited(client, login_as, runtime, "unsatisfied", "no")
    _deactivate_urban(login_as, "environment")
    admin = login_as("admin")
    page = admin.get("/admin/departments/urban").get_data(as_text=True)
    assert 'id="successor-change"' in page
    assert re.search(r'<option selected value="environment"|value="environment" selected', page)
    form = {**FORM, "name": "区住房和城乡建设局"}
    r = post_form(
        admin,
        "/admin/departments/urban",
        "/admin/departments/urban",
        {**form, "successor": "transport"},
    )
    assert r.status_code == 302, r.get_data(as_text=True)[:300]
    with runtime.sessions() as s:
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        transport_id = s.scalar(select(Department.id).where(Department.code == "transport"))
        assert not urban.active and urban.successor_id == transport_id
    log = admin.get("/admin/log").get_data(as_text=True)
    entry = re.search(r'<tr data-action="department_changed">(?:(?!</tr>).)*</tr>', log, re.S)
    assert entry is not None, log[-3000:]
    # Departments by their names, in the user's language; nothing left in English.
    assert "接手的部门：市生态环境局民声分局 → " in entry.group(0), entry.group(0)
    assert "部门 区住房和城乡建设局" in entry.group(0), entry.group(0)
    moved = re.search(r'<tr data-action="user_changed">(?:(?!</tr>).)*</tr>', log, re.S)
    assert moved is not None and "因该部门停用：区住房和城乡建设局" in moved.group(0)
    assert "deactivated" not in moved.group(0)
    assert _rework(login_as, number).status_code == 302
    assert _case(runtime, number).department.code == "transport"

    # The department that takes over must be active; a department never its own successor.
    with runtime.sessions() as s:
        s.execute(update(Department).where(Department.code == "environment").values(active=False))
        s.commit()
    r = post_form(
        admin,
        "/admin/departments/urban",
        "/admin/departments/urban",
        {**form, "successor": "environment"},
    )
    assert r.status_code in (400, 409)
    # A loop: environment (inactive) hands to urban; urban then may not hand to environment
    # (refused as inactive) — and with the check in the domain, directly:
    with runtime.sessions() as s:
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        env = s.scalar(select(Department).where(Department.code == "environment"))
        other = s.scalar(
            select(Department)
            .where(Department.active.is_(True), Department.code.not_in(("urban", "transport")))
            .order_by(Department.id)
            .limit(1)
        )
        env.successor_id = urban.id
        s.flush()
        for bad in (urban, env):
            try:
                staff.set_successor(s, urban, bad)
            except staff.StaffChangeRefused:
                pass
            else:
                raise AssertionError(f"{bad.code} accepted")
        # An active department with a successor chain back to urban: a loop.
        other.successor_id = urban.id
        try:
            staff.set_successor(s, urban, other)
        except staff.StaffChangeRefused:
            pass
        else:
            raise AssertionError("a loop accepted")
        s.rollback()
    with runtime.sessions() as s:
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        assert urban.successor_id == transport_id
    # Back to none: a later rework goes to the queue.
    r = post_form(
        admin, "/admin/departments/urban", "/admin/departments/urban", {**form, "successor": ""}
    )
    assert r.status_code == 302
    page = admin.get("/admin/departments/urban").get_data(as_text=True)
    assert re.search(r'id="department-successor">[^<]*待分派', page)


def test_the_system_written_transfer_reasons_show_in_the_readers_language(
    client: Any, login_as: Any, runtime: Any
) -> None:
    """The reason of a transfer the system made (a deactivation's handover, a rework
    following the successor) and of a requeue is stored as a neutral code, not Chinese text
    built at write time: a Chinese reader reads Chinese, an English one English, with the
    departments' names in their language."""
    from tests.integration.helpers import submit_complaint
    from tests.integration.test_kanban import _dispatch
    from triage import system_reasons
    from triage.models import Case

    number = _replied_and_visited(client, login_as, runtime, "unsatisfied", "no")
    in_hand, _code = submit_complaint(client, "幸福小区电梯又坏了，老人上下楼困难。", "电梯故障")
    _dispatch(login_as, runtime, in_hand)
    _deactivate_urban(login_as, "environment")
    assert _rework(login_as, number).status_code == 302
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        transferred = [e for e in case.events if e.action == "transferred"][-1]
        assert transferred.reason == system_reasons.REWORK_TO_SUCCESSOR
        case = s.scalar(select(Case).where(Case.tracking_number == in_hand))
        transferred = [e for e in case.events if e.action == "transferred"][-1]
        assert transferred.reason == system_reasons.DEACTIVATED_HANDED_OVER
    supervisor = login_as("supervisor")
    html = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    reasons = re.findall(r'<div class="reason">([^<]*)</div>', html)
    assert any("已停用" in r and "市生态环境局民声分局" in r for r in reasons), reasons
    assert not any("system:" in r for r in reasons), reasons
    supervisor.get("/lang/en")
    html = supervisor.get(f"/board/cases/{number}").get_data(as_text=True)
    reasons = re.findall(r'<div class="reason">([^<]*)</div>', html)
    wanted = "Housing is inactive"  # the English name the deactivation form gave
    assert any(r.startswith(wanted) and "Ecology and Environment Bureau" in r for r in reasons), (
        reasons
    )
    assert not any("已停用" in r for r in reasons), reasons
    html = supervisor.get(f"/board/cases/{in_hand}").get_data(as_text=True)
    reasons = re.findall(r'<div class="reason">([^<]*)</div>', html)
    assert any(r.startswith("Housing was deactivated: its case in hand goes to") for r in reasons)
