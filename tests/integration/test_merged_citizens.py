"""Merging case X into Y must not cut X's citizen off: X's tracking page follows Y (status,
public timeline, reply, masked for X's citizen), and Y's return visit calls X's citizen too."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from tests.conftest import csrf_from
from tests.integration.helpers import flashes, post_form, submit_complaint
from triage.models import Case, ReturnVisit, Status

Y_NAME, Y_PHONE = "王小明", "13812345678"
X_NAME, X_PHONE = "李秀英", "13900001111"
REPLY = "已联系投诉人王小明（电话 138 1234 5678）和李秀英，物业已于当日清理楼道，消防通道恢复畅通。"


def _case(runtime: Any, number: str) -> Case:
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        _ = case.department, case.events, case.replies, case.visits, case.merged_into
        return case


def _track(client: Any, number: str, code: str) -> str:
    page = client.get("/track").get_data(as_text=True)
    r = client.post(
        "/track",
        data={"csrf_token": csrf_from(page), "tracking_number": number, "query_code": code},
    )
    assert r.status_code == 200, r.get_data(as_text=True)[:2000]
    return r.get_data(as_text=True)


def _section(html: str, section_id: str) -> str:
    m = re.search(rf'<section[^>]*id="{section_id}"[^>]*>(.*?)</section>', html, flags=re.S)
    assert m, f"no section #{section_id} on the page"
    return m.group(1)


def _visit(client: Any, number: str, citizen: str = "", **answers: str) -> str:
    data = {
        "visit-reached": "yes",
        "visit-solved": "yes",
        "visit-satisfaction": "satisfied",
        "visit-note": "",
        **({"visit-citizen": citizen} if citizen else {}),
        **{f"visit-{k}": v for k, v in answers.items()},
    }
    r = post_form(client, f"/board/cases/{number}", f"/board/cases/{number}/visit", data)
    assert r.status_code == 302
    return " ".join(flashes(client.get(r.headers["Location"]).get_data(as_text=True)))


def _two_complaints_merged(
    client: Any, login_as: Any, runtime: Any
) -> tuple[Any, str, str, str, str]:
    """Y by 王小明, X by 李秀英 about the same blocked stairwell; X merged into Y, Y replied.

    Returns (supervisor client, Y's number and query code, X's number and query code)."""
    y, y_code = submit_complaint(
        client, "明德路12号楼道里堆满杂物，堵住了消防通道。", name=Y_NAME, phone=Y_PHONE
    )
    x, x_code = submit_complaint(
        client,
        "明德路12号3单元楼道杂物堆积，消防通道被堵，请尽快处理。",
        subject="消防通道被堵",
        name=X_NAME,
        phone=X_PHONE,
    )
    supervisor = login_as("supervisor")
    r = post_form(
        supervisor,
        f"/board/cases/{x}",
        f"/board/cases/{x}/merge",
        {"merge-target": y, "merge-reason": "同一楼道"},
    )
    assert r.status_code == 302
    assert _case(runtime, x).status == Status.MERGED
    y_id = _case(runtime, y).id
    post_form(
        supervisor, "/board/queue", f"/board/cases/{y}/assign", {f"c{y_id}-department": "urban"}
    )
    handler = login_as("urban")
    post_form(handler, f"/board/cases/{y}", f"/board/cases/{y}/reply", {"reply-text": REPLY})
    assert _case(runtime, y).status == Status.REPLIED
    return supervisor, y, y_code, x, x_code


def test_merged_citizen_sees_the_target_status_timeline_and_masked_reply(
    client: Any, login_as: Any, runtime: Any
) -> None:
    _, y, y_code, x, x_code = _two_complaints_merged(client, login_as, runtime)

    page = _track(client, x, x_code)
    own = _section(page, "your-case")
    assert x in own and "status-merged" in own
    target = _section(page, "merged-into")
    assert y in target
    assert "status-replied" in target  # Y's status, not X's
    assert "消防通道被堵" in own  # X's own subject; Y's (another citizen's words) is not shown
    assert "楼道堵塞" not in target
    assert "区住房和城乡建设局" in target
    reply = re.search(r'<blockquote class="reply">(.*?)</blockquote>', target, flags=re.S)
    assert reply, "the merged citizen does not see the reply"
    # Y's complainant's name and phone are masked for X's citizen, in every spelling.
    assert "物业已于当日清理楼道" in reply.group(1)
    assert Y_NAME not in page and "小明" not in page
    assert "138 1234 5678" not in page and Y_PHONE not in page and "5678" in reply.group(1)
    # Y's public timeline: dispatched and replied, in Chinese.
    timeline = re.search(r'<ol class="timeline">(.*?)</ol>', target, flags=re.S).group(1)
    assert "派" in timeline and "答复" in timeline

    # Y's own citizen sees Y's reply unmasked by the merge, and no merged section.
    own_page = _track(client, y, y_code)
    assert "merged-into" not in own_page and "物业已于当日清理楼道" in own_page
    # ... with the merged citizen's name masked: the reply is read by both.
    assert X_NAME not in own_page and "李**" in own_page


def test_merged_citizen_is_called_back_with_the_target(
    client: Any, login_as: Any, runtime: Any
) -> None:
    supervisor, y, _, x, x_code = _two_complaints_merged(client, login_as, runtime)

    page = supervisor.get(f"/board/cases/{y}").get_data(as_text=True)
    callers = _section(page, "citizens-to-call")
    assert x in callers and X_NAME in callers and X_PHONE in callers
    assert Y_NAME in callers and Y_PHONE in callers
    assert callers.count("尚未回访") == 2

    # External supervisors see the same list, masked.
    observer = login_as("observer").get(f"/board/cases/{y}").get_data(as_text=True)
    masked = _section(observer, "citizens-to-call")
    assert x in masked and "李**" in masked and "139****1111" in masked
    assert X_NAME not in observer and X_PHONE not in observer and Y_PHONE not in observer

    said = _visit(
        supervisor,
        y,
        citizen=x,
        satisfaction="basic",
        note=f"{X_NAME}表示基本满意，留电话{X_PHONE}",
    )
    assert x in said
    observer = login_as("observer").get(f"/board/cases/{y}").get_data(as_text=True)
    assert "表示基本满意" in observer
    assert X_NAME not in observer and X_PHONE not in observer
    case = _case(runtime, y)
    assert case.status == Status.REPLIED  # X's citizen's visit does not move Y on
    with runtime.sessions() as s:
        visits = s.scalars(select(ReturnVisit).where(ReturnVisit.case_id == case.id)).all()
        assert [(v.citizen_case_id, v.satisfaction) for v in visits] == [
            (_case(runtime, x).id, "basic")
        ]
    assert case.events[-1].action == "citizen_visited"

    # Y's own citizen is called as before, and then Y closes.
    _visit(supervisor, y)
    assert _case(runtime, y).status == Status.VISITED
    page = supervisor.get(f"/board/cases/{y}").get_data(as_text=True)
    callers = _section(page, "citizens-to-call")
    assert "尚未回访" not in callers and "基本满意" in callers
    post_form(supervisor, f"/board/cases/{y}", f"/board/cases/{y}/close", {})
    assert _case(runtime, y).status == Status.CLOSED

    # X's citizen sees on their own timeline that they were called back; no personal data.
    track = _track(client, x, x_code)
    own = _section(track, "your-case")
    assert "回访" in own
    assert X_PHONE not in track and "基本满意，留电话" not in track
    assert "status-closed" in _section(track, "merged-into")
    # X stays merged: its own visit is on Y, counted once per citizen.
    assert _case(runtime, x).status == Status.MERGED
    with runtime.sessions() as s:
        assert s.query(ReturnVisit).count() == 2


def test_merged_citizen_may_be_called_after_the_target_was_visited(
    client: Any, login_as: Any, runtime: Any
) -> None:
    supervisor, y, _, x, _ = _two_complaints_merged(client, login_as, runtime)
    _visit(supervisor, y)
    assert _case(runtime, y).status == Status.VISITED
    page = supervisor.get(f"/board/cases/{y}").get_data(as_text=True)
    form = re.search(r'<form[^>]*id="visit-form".*?</form>', page, flags=re.S)
    assert form, "no visit form for the merged citizen once the case is visited"
    assert f'value="{x}"' in form.group(0) and 'value=""' not in form.group(0)
    # Closing now would leave X's citizen without a call: the close form says so.
    warning = re.search(r'<p[^>]*id="not-called-back"[^>]*>(.*?)</p>', page, flags=re.S)
    assert warning and x in warning.group(1) and "尚未回访" in warning.group(1)
    _visit(supervisor, y, citizen=x, reached="no", solved="", satisfaction="")
    visits = _case(runtime, y).visits
    assert [(v.citizen_case_id is not None, v.reached) for v in visits] == [
        (False, True),
        (True, False),
    ]
    # Called, although not reached: the warning is gone.
    page = supervisor.get(f"/board/cases/{y}").get_data(as_text=True)
    assert 'id="not-called-back"' not in page and 'id="close-form"' in page
    # Y's own complainant cannot be visited twice through the form.
    said = _visit(supervisor, y)
    assert "回访" in said and _case(runtime, y).status == Status.VISITED
    assert len(_case(runtime, y).visits) == 2


def test_a_visit_for_a_case_not_merged_here_is_refused(
    client: Any, login_as: Any, runtime: Any
) -> None:
    supervisor, y, *_ = _two_complaints_merged(client, login_as, runtime)
    stranger, _ = submit_complaint(client, "幸福路路灯不亮已经一周。", subject="路灯不亮")
    said = _visit(supervisor, y, citizen=stranger)
    assert said and _case(runtime, y).visits == []


def test_merge_chain_leads_to_the_last_case(client: Any, login_as: Any, runtime: Any) -> None:
    """X into Y, then Y into Z: X's citizen follows Z and is among Z's citizens."""
    x, x_code = submit_complaint(
        client, "明德路路口红绿灯坏了，车辆乱行。", subject="红绿灯坏", name=X_NAME
    )
    y, _ = submit_complaint(client, "明德路与人民路路口信号灯不亮。", subject="信号灯不亮")
    z, _ = submit_complaint(client, "人民路明德路口信号灯故障两天。", subject="信号灯故障")
    supervisor = login_as("supervisor")
    for source, target in ((x, y), (y, z)):
        post_form(
            supervisor,
            f"/board/cases/{source}",
            f"/board/cases/{source}/merge",
            {"merge-target": target, "merge-reason": ""},
        )
    assert _case(runtime, y).status == Status.MERGED
    page = _track(client, x, x_code)
    assert z in _section(page, "merged-into")
    callers = _section(
        supervisor.get(f"/board/cases/{z}").get_data(as_text=True), "citizens-to-call"
    )
    assert x in callers and y in callers and X_NAME in callers


def test_a_case_with_merged_citizens_is_not_rejected(
    client: Any, login_as: Any, runtime: Any
) -> None:
    y, _ = submit_complaint(client, "幸福路12号门口井盖缺失，很危险。", subject="井盖缺失")
    x, x_code = submit_complaint(
        client, "幸福路井盖丢了，晚上看不见。", subject="井盖", name=X_NAME
    )
    supervisor = login_as("supervisor")
    post_form(
        supervisor,
        f"/board/cases/{x}",
        f"/board/cases/{x}/merge",
        {"merge-target": y, "merge-reason": ""},
    )
    page = supervisor.get(f"/board/cases/{y}").get_data(as_text=True)
    assert 'id="reject-form"' not in page
    r = post_form(
        supervisor,
        f"/board/cases/{y}",
        f"/board/cases/{y}/reject",
        {"reject-outcome": "duplicate", "reject-reason": "重复"},
    )
    said = flashes(supervisor.get(r.headers["Location"]).get_data(as_text=True))
    assert any(y in f for f in said), said
    assert _case(runtime, y).status == Status.TRIAGE
    assert "status-triage" in _section(_track(client, x, x_code), "merged-into")
