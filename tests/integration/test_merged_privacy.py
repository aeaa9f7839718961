"""A citizen's data written on another citizen's case stays masked: case B (李四) merged into
case A (王小明), A's texts name 李四 (A's own letter, the merge reason, a repeat call of B's
caller, the reply to both); B's page shows the merge reason that names 王小明. Observers,
their search, exports, the public pages, Open311 and the notices each citizen receives mask
every citizen of the group but the reader; a follow-up case opened at the desk masks the
caller of the case it follows."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from tests.conftest import csrf_from, make_settings
from tests.integration.helpers import close_case, post_form, submit_complaint
from tests.integration.test_operator_desk import _desk
from triage.api_keys import create_key
from triage.models import Case
from triage.outbox import OutgoingMail
from web.cli import main

A_NAME, A_PHONE, A_MAIL = "王小明", "13812345678", "wang.xm@example.com"
B_NAME, B_PHONE, B_MAIL = "李四", "13900001111", "lisi@example.com"
LATER_NAME = "李大姐"  # given by B's caller on a repeat call
A_BODY = "明德路12号楼道堆满杂物，堵住了消防通道。邻居李四也反映过这件事。"
B_BODY = "我是李四，电话13900001111。明德路12号3单元楼道杂物堆积，消防通道被堵。"
REPLY = "已联系王小明和李四（139 0000 1111，lisi@example.com），物业已于当日清理楼道。"
# B's data in any spelling an observer could read it in, and the name of B's later caller.
B_SECRETS = (B_NAME, "13900001111", "139 0000 1111", "lisi@", LATER_NAME)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    return make_settings(tmp_path, db_url, mail={"sender": "xiaonengban@example.gov.cn"})


def _case_id(runtime: Any, number: str) -> int:
    with runtime.sessions() as s:
        return int(s.scalar(select(Case.id).where(Case.tracking_number == number)))


def _merged_and_replied(client: Any, login_as: Any, runtime: Any) -> tuple[str, str, str, str]:
    """A by 王小明 and B by 李四 about one stairwell; B merged into A with a reason naming
    both; B's caller calls again (催办 on A, as 李大姐); A dispatched and replied naming both.
    Returns (A's number, A's query code, B's number, B's query code)."""
    a, a_code = submit_complaint(client, A_BODY, name=A_NAME, phone=A_PHONE, email=A_MAIL)
    b, b_code = submit_complaint(
        client, B_BODY, subject="消防通道被堵", name=B_NAME, phone=B_PHONE, email=B_MAIL
    )
    supervisor = login_as("supervisor")
    r = post_form(
        supervisor,
        f"/board/cases/{b}",
        f"/board/cases/{b}/merge",
        {"merge-target": a, "merge-reason": f"与{A_NAME}的投诉是同一楼道（{B_NAME}）"},
    )
    assert r.status_code == 302
    r = _desk(
        login_as("operator"),
        {
            "phone": B_PHONE,
            "name": LATER_NAME,
            "about": f"urge:{a}",
            "body": f"{LATER_NAME}（{B_NAME}家属）再次来电催办，电话139 0000 1111",
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
    post_form(
        supervisor,
        "/board/queue",
        f"/board/cases/{a}/assign",
        {f"c{_case_id(runtime, a)}-department": "urban"},
    )
    r = post_form(
        login_as("urban"), f"/board/cases/{a}", f"/board/cases/{a}/reply", {"reply-text": REPLY}
    )
    assert r.status_code == 302
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == a))
        assert case.status == "replied" and case.urge_count == 1
    return a, a_code, b, b_code


def _page(client: Any, url: str, **query: str) -> str:
    r = client.get(url, query_string=query)
    assert r.status_code == 200, (url, r.status_code)
    return r.get_data(as_text=True)


def _track(client: Any, number: str, code: str) -> str:
    page = client.get("/track").get_data(as_text=True)
    r = client.post(
        "/track",
        data={"csrf_token": csrf_from(page), "tracking_number": number, "query_code": code},
    )
    assert r.status_code == 200
    return r.get_data(as_text=True)


def _replies_to(runtime: Any, address: str) -> list[str]:
    """The plain text of the reply notices (已答复) queued for `address`."""
    with runtime.sessions() as s:
        raws = [
            m.raw
            for m in s.scalars(select(OutgoingMail).order_by(OutgoingMail.id))
            if address in m.recipients and "已答复" in m.subject
        ]
    texts = []
    for raw in raws:
        mail = message_from_bytes(raw, policy=policy.default)
        texts.append(mail.get_body(preferencelist=("plain",)).get_content())  # type: ignore[union-attr]
    return texts


def test_observers_never_read_or_find_the_merged_citizen(
    client: Any, login_as: Any, runtime: Any
) -> None:
    a, _a_code, b, _b_code = _merged_and_replied(client, login_as, runtime)
    observer = login_as("observer")

    target = _page(observer, f"/board/cases/{a}")
    assert "物业已于当日清理楼道" in target and "邻居李*" in target
    for secret in (*B_SECRETS, A_NAME):
        assert secret not in target, secret
    assert "139****1111" in target and "l***@example.com" in target
    # B's page: its timeline's merge reason names A's citizen.
    merged = _page(observer, f"/board/cases/{b}")
    assert "同一楼道" in merged
    assert A_NAME not in merged and B_NAME not in merged

    # Observers search only what they see: B's citizen finds nothing, the reply finds A.
    for probe in (B_NAME, LATER_NAME, "13900001111", "lisi"):
        found = _page(observer, "/board/cases", q=probe)
        assert a not in found and b not in found, probe
    found = _page(observer, "/board/cases", q="清理楼道")
    assert a in found and B_NAME not in found and A_NAME not in found
    listed = _page(observer, "/board/cases")
    assert a in listed and B_NAME not in listed
    with runtime.sessions() as s:
        masked = s.scalar(select(Case.masked_text).where(Case.tracking_number == a))
    assert "清理楼道" in masked and not any(x in masked for x in B_SECRETS)

    # Staff still see and find everything.
    supervisor = login_as("supervisor")
    assert B_NAME in _page(supervisor, f"/board/cases/{a}")
    assert a in _page(supervisor, "/board/cases", q=B_NAME)


def test_exports_mask_every_citizen_of_the_group(
    client: Any, login_as: Any, runtime: Any, config_file: Path, tmp_path: Path
) -> None:
    a, _a_code, b, _b_code = _merged_and_replied(client, login_as, runtime)
    out = tmp_path / "cases.jsonl"
    result = CliRunner().invoke(
        main, ["export", "cases", "--config", str(config_file), "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    records = {
        r["tracking_number"]: r for r in map(json.loads, out.read_text("utf-8").split("\n")[:-1])
    }
    assert "邻居李*也反映过" in records[a]["body"]
    assert records[b]["merged_into"] == a and "3单元楼道" in records[b]["body"]
    text = out.read_text("utf-8")
    for secret in (*B_SECRETS, A_NAME, "13812345678"):
        assert secret not in text, secret


def test_the_public_pages_and_notices_mask_the_other_citizens(
    client: Any, login_as: Any, runtime: Any
) -> None:
    a, a_code, b, b_code = _merged_and_replied(client, login_as, runtime)

    own = _track(client, a, a_code)
    assert "物业已于当日清理楼道" in own
    for secret in B_SECRETS:
        assert secret not in own, secret
    theirs = _track(client, b, b_code)
    assert "物业已于当日清理楼道" in theirs and A_NAME not in theirs

    # The reply notices: each citizen reads the others masked, their own data as written.
    (to_a,) = _replies_to(runtime, A_MAIL)
    assert "物业已于当日清理楼道" in to_a and A_NAME in to_a
    for secret in B_SECRETS:
        assert secret not in to_a, secret
    (to_b,) = _replies_to(runtime, B_MAIL)
    assert B_NAME in to_b and "lisi@example.com" in to_b
    assert A_NAME not in to_b and "王**" in to_b
    # The satisfaction page A's notice links to shows the reply the same way.
    path = re.search(r"http://127\.0\.0\.1:5000(/satisfaction/\S+)", to_a).group(1)
    page = _page(client, path)
    assert "物业已于当日清理楼道" in page and B_NAME not in page and "李*" in page


def test_open311_masks_the_citizens_merged_into_a_request(
    client: Any, login_as: Any, runtime: Any
) -> None:
    with runtime.sessions() as s, s.begin():
        key = create_key(s, "市民App", "test", datetime.now(UTC)).secret
    created = client.post(
        "/open311/v2/requests.json",
        data={
            "api_key": key,
            "service_code": "urban",
            "description": A_BODY,
            "first_name": "小明",
            "last_name": "王",
            "phone": A_PHONE,
            "lat": "31.2304",
            "long": "121.4737",
        },
    )
    assert created.status_code == 201, created.get_data(as_text=True)
    a = created.get_json()[0]["service_request_id"]
    b, _ = submit_complaint(client, B_BODY, name=B_NAME, phone=B_PHONE, email=B_MAIL)
    post_form(
        login_as("supervisor"),
        f"/board/cases/{b}",
        f"/board/cases/{b}/merge",
        {"merge-target": a, "merge-reason": "同一楼道"},
    )
    (one,) = client.get(f"/open311/v2/requests/{a}.json").get_json()
    listed = client.get("/open311/v2/requests.json").get_data(as_text=True)
    assert "消防通道" in one["description"] and "李*" in one["description"]
    assert B_NAME not in json.dumps(one, ensure_ascii=False) and B_NAME not in listed


def test_a_follow_up_case_masks_the_caller_of_the_case_it_follows(
    client: Any, login_as: Any, runtime: Any
) -> None:
    first, _ = submit_complaint(client, "幸福小区门口井盖松动", name="赵六", phone="13700002222")
    close_case(runtime, first)
    r = _desk(
        login_as("operator"),
        {
            "phone": "13700002222",
            "name": "赵小妹",
            "about": f"follow:{first}",
            "body": "赵六的女儿来电：赵六腿脚不便，井盖旁边又塌了一块。",
        },
    )
    assert r.status_code == 302, r.get_data(as_text=True)[-2000:]
    follow_up = r.headers["Location"].rsplit("/", 1)[-1]
    observer = login_as("observer")
    page = _page(observer, f"/board/cases/{follow_up}")
    assert "井盖旁边又塌了一块" in page and "赵*的女儿" in page
    assert "赵六" not in page and "赵小妹" not in page
    assert follow_up not in _page(observer, "/board/cases", q="赵六")
