"""External supervisors' observations (效能监督员) on a real database, through the pages: filed
on a case or a department, answered by a supervisor, read back by their observer only, masked
for observers, with role checks and CSRF."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from tests.conftest import login, password_of
from tests.integration.helpers import flashes, post_form, submit_complaint
from triage import observations
from triage.models import (
    Case,
    CaseEvent,
    Department,
    IllegalTransition,
    Observation,
    ObservationState,
    User,
)
from web.auth import hash_password


def _page(client: Any, url: str) -> str:
    r = client.get(url)
    assert r.status_code == 200, f"{url}: {r.status_code}"
    return r.get_data(as_text=True)


def _file_on_case(observer: Any, number: str, text: str) -> Any:
    return post_form(
        observer,
        "/board/observations/",
        "/board/observations/new",
        {"obs-case": number, "obs-body": text},
    )


def _answer(office: Any, observation_id: int, text: str, back: str = "") -> Any:
    return post_form(
        office,
        "/account/password",
        f"/board/observations/{observation_id}/answer",
        {f"answer{observation_id}-answer": text, **({"back": back} if back else {})},
    )


def test_observer_files_supervisor_answers_observer_reads(
    client: Any, runtime: Any, login_as: Any
) -> None:
    number, _ = submit_complaint(client, "幸福路12号楼道堆满杂物，消防通道堵塞。")
    observer = login_as("observer")
    page = _page(observer, f"/board/cases/{number}")
    assert 'id="observation-form"' in page and "13812345678" not in page
    r = _file_on_case(observer, number, "该件受理三天仍未分派，请督促。")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/board/cases/{number}")
    with runtime.sessions() as s:
        obs = s.scalar(select(Observation))
        assert obs.state == ObservationState.OPEN and obs.case.tracking_number == number
        filed = s.scalar(select(CaseEvent).where(CaseEvent.action == "observation_filed"))
        assert filed.detail == {"observation_id": obs.id} and filed.actor_name
        obs_id = obs.id

    office = login_as("supervisor")
    listing = _page(office, "/board/observations/")
    assert "该件受理三天仍未分派" in listing and 'class="stack answer-form"' in listing
    assert 'id="nav-open-observations"' in listing
    assert _page(office, f"/board/cases/{number}").count(f'data-observation="{obs_id}"') == 1
    # The answer names the citizen: the observer must read it masked.
    r = _answer(office, obs_id, "已督促住建局今日派员清理，联系人王小明 13812345678。", "case")
    assert r.status_code == 302 and r.headers["Location"].endswith(f"/board/cases/{number}")
    assert 'id="nav-open-observations"' not in _page(office, "/board/observations/")
    with runtime.sessions() as s:
        obs = s.get(Observation, obs_id)
        assert obs.state == ObservationState.ANSWERED and obs.answered_by.username == "supervisor"
        answered = s.scalar(select(CaseEvent).where(CaseEvent.action == "observation_answered"))
        assert answered.detail == {"observation_id": obs_id}
    # Answered once only.
    r = _answer(office, obs_id, "再答一次")
    assert any(flashes(_page(office, "/board/observations/")))
    with runtime.sessions() as s:
        assert s.get(Observation, obs_id).answer.startswith("已督促")

    for url in ("/board/observations/", f"/board/cases/{number}"):
        html = _page(observer, url)
        assert "已督促住建局今日派员清理" in html, url
        assert "13812345678" not in html and "王小明" not in html, url
        assert "138****5678" in html, url


def test_observation_on_a_department_and_who_sees_it(app: Any, runtime: Any, login_as: Any) -> None:
    # A second external supervisor: observers see their own observations only.
    with runtime.sessions() as s, s.begin():
        s.add(
            User(
                username="observer2",
                display_name="第二监督员",
                role="observer",
                password_hash=hash_password(password_of("observer2")),
            )
        )
    first = login_as("observer")
    r = post_form(
        first,
        "/board/observations/",
        "/board/observations/new",
        {"obs-department": "urban", "obs-body": "住建局窗口午休时间无人值守。"},
    )
    assert r.status_code == 302
    with runtime.sessions() as s:
        obs = s.scalar(select(Observation))
        assert obs.department.code == "urban" and obs.case_id is None
        obs_id = obs.id
    assert "住建局窗口午休时间无人值守" in _page(first, "/board/observations/")
    second = login(app.test_client(), "observer2")
    assert "住建局窗口午休时间无人值守" not in _page(second, "/board/observations/")

    # Neither a department nor a text: refused with a message, nothing filed.
    for data in ({"obs-body": "x"}, {"obs-department": "urban"}):
        post_form(first, "/board/observations/", "/board/observations/new", data)
        assert len(flashes(_page(first, "/board/observations/"))) == 1, data
    with runtime.sessions() as s:
        assert len(s.scalars(select(Observation)).all()) == 1

    # Observers may not answer; handlers and operators neither file nor answer nor list.
    r = _answer(first, obs_id, "自己答复")
    assert r.status_code == 403
    for who in ("urban", "operator"):
        user = login_as(who)
        assert user.get("/board/observations/").status_code == 403
        assert _answer(user, obs_id, "答复").status_code == 403
    supervisor = login_as("supervisor")
    r = post_form(
        supervisor,
        "/board/observations/",
        "/board/observations/new",
        {"obs-department": "urban", "obs-body": "督查也想提"},
    )
    assert r.status_code == 403
    # CSRF: a post without the token is refused.
    r = supervisor.post(
        f"/board/observations/{obs_id}/answer", data={f"answer{obs_id}-answer": "无令牌"}
    )
    assert r.status_code == 400
    assert _answer(supervisor, 999999, "x").status_code == 404
    with runtime.sessions() as s:
        assert s.get(Observation, obs_id).state == ObservationState.OPEN
    # An observation on an unknown case is not filed.
    r = _file_on_case(first, "MS-2026-999999", "不存在")
    assert r.status_code == 404
    with runtime.sessions() as s:
        assert s.scalar(select(Case)) is None


def test_two_supervisors_answering_at_once_keep_the_first_answer(runtime: Any) -> None:
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        observer = s.scalar(select(User).where(User.username == "observer"))
        urban = s.scalar(select(Department).where(Department.code == "urban"))
        obs_id = observations.file(s, observer, now, "窗口无人", department=urban).id
    with runtime.sessions() as first, runtime.sessions() as second:
        mine, theirs = first.get(Observation, obs_id), second.get(Observation, obs_id)
        boss = first.scalar(select(User).where(User.username == "supervisor"))
        observations.answer(first, mine, boss, now, "第一份答复")
        first.commit()
        other = second.scalar(select(User).where(User.username == "supervisor"))
        with pytest.raises(IllegalTransition, match="already answered"):
            observations.answer(second, theirs, other, now, "第二份答复")
        second.rollback()
    with runtime.sessions() as s:
        assert s.get(Observation, obs_id).answer == "第一份答复"
