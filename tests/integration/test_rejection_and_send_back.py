"""A rejected complaint tells the citizen why (a public reason from the configured list, the
supervisor's text, the outside body to turn to); the internal reason stays internal. A case
sent back shows why in the queue and does not go back where it came from with one click."""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select

from intake.normalise import clean_text
from tests.conftest import csrf_from
from tests.integration.helpers import flashes, post_form, submit_complaint
from triage.models import Case, Status

INTERNAL = "内部备注：该号码本月已提交同类广告五次，已报网信部门。"


def typed(text: str) -> str:
    """What is stored of text typed into a form (cleaned at the boundary)."""
    return clean_text(text)


def _case(runtime: Any, number: str) -> Case:
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        _ = case.department, case.events
        return case


def _track(client: Any, number: str, code: str) -> str:
    page = client.get("/track").get_data(as_text=True)
    r = client.post(
        "/track",
        data={"csrf_token": csrf_from(page), "tracking_number": number, "query_code": code},
    )
    assert r.status_code == 200
    return r.get_data(as_text=True)


def _reject(client: Any, number: str, **fields: str) -> list[str]:
    data = {"reject-outcome": "", "reject-reason": "", "reject-public_reason": ""}
    data |= {f"reject-{k}": v for k, v in fields.items()}
    r = post_form(client, f"/board/cases/{number}", f"/board/cases/{number}/reject", data)
    assert r.status_code == 302
    return flashes(client.get(r.headers["Location"]).get_data(as_text=True))


def _public(page: str) -> str:
    m = re.search(r'<div class="rejection">(.*?)</div>', page, flags=re.S)
    assert m, "the tracking page gives no reason"
    return " ".join(re.sub(r"<[^>]+>", " ", m.group(1)).split())


def test_rejected_citizen_reads_the_public_reason_not_the_internal_one(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, code = submit_complaint(client, "代开发票，低息贷款，加微信。", subject="办证")
    supervisor = login_as("supervisor")
    said = _reject(
        supervisor,
        number,
        outcome="spam",
        reason=INTERNAL,
        public_reason="您提交的内容为商业广告，不属于诉求。",
    )
    assert not any("理由" in f and "请" in f for f in said), said
    case = _case(runtime, number)
    assert (case.status, case.rejection_code, case.rejection_reason) == (
        Status.REJECTED,
        "spam",
        typed(INTERNAL),
    )

    page = _track(client, number, code)
    public = _public(page)
    assert "未予受理" in public
    # Not "invalid": a citizen sent elsewhere did nothing wrong.
    badge = re.search(r'<span class="badge status-rejected">([^<]+)</span>', page)
    assert badge and badge.group(1).strip() == "未予受理" and "无效" not in page
    assert "广告或恶意信息" in public
    assert typed("您提交的内容为商业广告，不属于诉求。") in public
    assert "网信" not in page and "内部备注" not in page

    client.get("/lang/en")
    public = _public(_track(client, number, code))
    assert "Advertising or abuse" in public and "广告或恶意信息" not in public


def test_not_ours_names_the_outside_body(client: Any, login_as: Any, runtime: Any) -> None:
    number, code = submit_complaint(
        client, "小区停电三天了，供电公司电话一直打不通。", subject="停电", phone="13812345678"
    )
    supervisor = login_as("supervisor")
    said = _reject(supervisor, number, outcome="not_ours", reason="供电属国网，非政府部门")
    assert any("单位" in f for f in said), said
    assert _case(runtime, number).status == Status.TRIAGE

    _reject(
        supervisor,
        number,
        outcome="not_ours",
        reason="供电属国网，非政府部门",
        referred_to="国网民声供电公司（95598）",
        public_reason="已记下您的电话 138-1234-5678，供电抢修请直接联系供电公司。",
    )
    case = _case(runtime, number)
    assert case.status == Status.REJECTED and case.referred_to == typed("国网民声供电公司（95598）")

    page = _track(client, number, code)
    public = _public(page)
    assert typed("请向国网民声供电公司（95598）反映") in public
    assert "不属于本办受理范围" in public
    # The public text is masked with the case's own contact, however it is written.
    assert "138-1234-5678" not in public and "138****5678" in public
    assert "非政府部门" not in public

    client.get("/lang/en")
    public = _public(_track(client, number, code))
    assert "Not ours to handle" in public
    assert typed("Please turn to 国网民声供电公司（95598） with this matter.") in public


def test_an_unknown_outcome_is_refused(client: Any, login_as: Any, runtime: Any) -> None:
    number, _ = submit_complaint(client, "测试一下这个表单能不能用。", subject="测试")
    supervisor = login_as("supervisor")
    said = _reject(supervisor, number, outcome="made_up", reason="测试")
    assert said and _case(runtime, number).status == Status.TRIAGE


def _queue_row(client: Any, number: str) -> str:
    page = client.get("/board/queue").get_data(as_text=True)
    m = re.search(rf'<tr[^>]*data-case="{number}".*?</tr>', page, flags=re.S)
    assert m, f"{number} is not in the queue"
    return m.group(0)


def _dispatch(client: Any, runtime: Any, number: str, department: str, reason: str = "") -> None:
    case_id = _case(runtime, number).id
    data = {f"c{case_id}-department": department, "back": "queue"}
    if reason:
        data[f"c{case_id}-reason"] = reason
    r = post_form(client, "/board/queue", f"/board/cases/{number}/assign", data)
    assert r.status_code == 302


def test_sent_back_case_shows_why_and_is_not_sent_back_with_one_click(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _ = submit_complaint(
        client, "小区内部道路破损，公交车进不来，积水严重。", subject="公交站旁道路破损"
    )
    supervisor = login_as("supervisor")
    row = _queue_row(supervisor, number)
    assert 'data-suggested="transport"' in row  # the keywords' suggestion, chosen in the row
    _dispatch(supervisor, runtime, number, "transport")
    assert _case(runtime, number).department.code == "transport"

    transport = login_as("transport")
    why = "该道路在小区红线内，属小区内部道路，应由住建部门督促物业维修。"
    post_form(
        transport,
        f"/board/cases/{number}",
        f"/board/cases/{number}/send-back",
        {"sendback-reason": why},
    )
    assert _case(runtime, number).status == Status.TRIAGE

    row = _queue_row(supervisor, number)
    assert typed(why) in row and "区交通运输局" in row
    assert "不属于本办受理范围？" in row and "#reject-form" in row
    # Nothing is pre-selected: the suggestion is the department that returned it, which the
    # row's selector marks (web/static/board_lists.js reads data-returned).
    assert "data-suggested" not in row
    assert 'data-returned="transport"' in row

    # One click back to the same department is refused without a reason.
    _dispatch(supervisor, runtime, number, "transport")
    assert _case(runtime, number).status == Status.TRIAGE
    page = supervisor.get("/board/queue").get_data(as_text=True)
    assert any("退回" in f for f in flashes(page))
    # With no department chosen at all, nothing happens either.
    _dispatch(supervisor, runtime, number, "")
    assert _case(runtime, number).status == Status.TRIAGE

    _dispatch(
        supervisor, runtime, number, "transport", reason="经现场核实为市政道路，仍由交通局办理"
    )
    case = _case(runtime, number)
    assert case.status == Status.ASSIGNED and case.department.code == "transport"
    assert case.events[-1].reason == typed("经现场核实为市政道路，仍由交通局办理")


def test_sent_back_case_goes_elsewhere_with_one_click(
    client: Any, login_as: Any, runtime: Any
) -> None:
    number, _ = submit_complaint(client, "公交站台顶棚破损，下雨没法等车。", subject="站台破损")
    supervisor = login_as("supervisor")
    _dispatch(supervisor, runtime, number, "urban")
    post_form(
        login_as("urban"),
        f"/board/cases/{number}",
        f"/board/cases/{number}/send-back",
        {"sendback-reason": "公交站台归交通局管理"},
    )
    row = _queue_row(supervisor, number)
    # The suggestion (transport) did not return it: it stays pre-selected.
    assert 'data-suggested="transport"' in row and 'data-returned="urban"' in row
    assert "公交站台归交通局管理" in row
    _dispatch(supervisor, runtime, number, "transport")
    assert _case(runtime, number).department.code == "transport"


def test_public_texts_are_shown_as_text(client: Any, login_as: Any, runtime: Any) -> None:
    number, code = submit_complaint(client, "隔壁工厂排放的事不知道找谁。", subject="排放")
    _reject(
        login_as("supervisor"),
        number,
        outcome="not_ours",
        reason="属市级",
        referred_to='<img src=x onerror="alert(1)">市生态环境局',
        public_reason="<script>alert(2)</script>请联系市局",
    )
    page = _track(client, number, code)
    assert "<script>alert(2)" not in page and "<img src=x" not in page
    assert "&lt;script&gt;" in page and "&lt;img src=x" in page
