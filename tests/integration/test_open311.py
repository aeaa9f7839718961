"""Open311 GeoReport v2 against the real database (SQLite or PostgreSQL, by
MINSHENG_TEST_DB): every endpoint in JSON and in XML (parsed with a real parser), requests
that become cases through the common registration, retries, masking, errors and limits."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from xml.etree import ElementTree as ET

import pytest
from sqlalchemy import select

from tests.conftest import make_settings
from tests.integration.helpers import submit_complaint
from triage.api_keys import create_key, find_key, revoke_key
from triage.cases import assign_case, register
from triage.models import Case, CaseEvent, Department
from web.open311.registration import subject_of

API = "/open311/v2"
NOISE = "幸福路12号的饭店每天夜里排油烟，噪音很大，影响休息。我是王小明，电话13812345678。"
CONTACT = {"first_name": "小明", "last_name": "王", "phone": "13812345678",
           "email": "wang@example.com"}  # fmt: skip


def new_key(runtime: Any, name: str = "市民App") -> str:
    with runtime.sessions() as s, s.begin():
        return create_key(s, name, "test", datetime.now(UTC)).secret


def post(client: Any, key: str, fmt: str = "json", **fields: str) -> Any:
    data = {"api_key": key, "service_code": "environment", "description": NOISE,
            "lat": "31.2304", "long": "121.4737", **fields}  # fmt: skip
    return client.post(f"{API}/requests.{fmt}", data=data)


def xml(response: Any) -> ET.Element:
    assert response.content_type.startswith("text/xml"), response.content_type
    return ET.fromstring(response.get_data())


def xml_rows(response: Any, item: str = "request") -> list[dict[str, str]]:
    root = xml(response)
    return [{child.tag: child.text or "" for child in row} for row in root.findall(item)]


def error_of(response: Any, fmt: str) -> tuple[int, str]:
    """The (code, description) of a spec error answer, checked against the HTTP status."""
    if fmt == "xml":
        root = xml(response)
        assert root.tag == "errors"
        code, text = root.findtext("error/code"), root.findtext("error/description")
    else:
        assert response.content_type.startswith("application/json")
        ((code, text),) = [(e["code"], e["description"]) for e in response.get_json()]
    assert int(code) == response.status_code
    return response.status_code, str(text)


# -- discovery and services ---------------------------------------------------------------------


def test_discovery_and_services_in_both_formats(client: Any, runtime: Any) -> None:
    d = client.get(f"{API}/discovery.json").get_json()
    (endpoint,) = d["endpoints"]
    assert endpoint["url"].endswith("/open311/v2")
    assert set(endpoint["formats"]) == {"text/xml", "application/json"}
    root = xml(client.get(f"{API}/discovery.xml"))
    assert root.tag == "discovery"
    assert [f.text for f in root.findall("endpoints/endpoint/formats/format")] == [
        "text/xml",
        "application/json",
    ]

    services = client.get(f"{API}/services.json").get_json()
    departments = runtime.settings.departments
    assert len(services) == sum(len(d.labels) or 1 for d in departments)
    by_code = {s["service_code"]: s for s in services}
    assert by_code["environment"]["service_name"] == "环境保护"
    assert by_code["environment"]["group"] == "市生态环境局民声分局"
    assert "5" in by_code["environment"]["description"]  # the commitment, in working days
    assert "3" in by_code["safety"]["description"]
    assert by_code["urban"]["metadata"] is False
    assert xml_rows(client.get(f"{API}/services.xml"), "service") == [
        {k: ("false" if v is False else str(v)) for k, v in s.items()} for s in services
    ]

    definition = client.get(f"{API}/services/urban.json").get_json()
    assert definition == {"service_code": "urban", "attributes": []}
    root = xml(client.get(f"{API}/services/urban.xml"))
    assert root.tag == "service_definition" and root.findtext("service_code") == "urban"
    for fmt in ("json", "xml"):
        r = client.get(f"{API}/services/potholes.{fmt}")
        assert error_of(r, fmt)[0] == 404

    english = client.get(f"{API}/services.json?lang=en").get_json()
    assert "working days" in english[0]["description"]


# -- creating requests ---------------------------------------------------------------------------


def test_a_request_becomes_a_case_on_channel_api_like_any_other(
    client: Any, runtime: Any, login_as: Any
) -> None:
    key = new_key(runtime)
    r = post(client, key, device_id="phone-1", **CONTACT)
    assert r.status_code == 201, r.get_data(as_text=True)
    (answer,) = r.get_json()
    number, code = answer["service_request_id"], answer["query_code"]
    assert re.fullmatch(r"MS-\d{4}-\d{6}", number)
    assert number in answer["service_notice"] and code in answer["service_notice"]

    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        assert case is not None
        assert case.channel == "api" and case.api_key_id == find_key(s, "市民App").id
        assert (case.contact_name, case.contact_phone) == ("王小明", "13812345678")
        assert case.body == NOISE and case.subject == subject_of(NOISE)
        actions = [e.action for e in case.events]
        assert actions[:2] == ["received", "suggested"] and "api_filed" in actions
        filed = next(e for e in case.events if e.action == "api_filed")
        assert filed.detail["api_key_name"] == "市民App"
        assert filed.detail["service_code"] == "environment"  # the caller's hint ...
        suggested = case.suggested_department.code if case.suggested_department else None
        assert filed.detail["suggested_department"] == suggested  # ... beside the model's
        assert filed.detail["lat"] == 31.2304 and filed.detail["device_id"] == "phone-1"
        api_case = (case.status, suggested, case.urgent, case.confidence, case.triage_due_at)

    # The same words through the public form are classified and queued the same way.
    web_number, _code = submit_complaint(client, NOISE, subject=subject_of(NOISE))
    with runtime.sessions() as s:
        web = s.scalar(select(Case).where(Case.tracking_number == web_number))
        web_suggested = web.suggested_department.code if web.suggested_department else None
        assert (web.status, web_suggested, web.urgent, web.confidence) == api_case[:4]
        assert web.similar and web.similar[0][0] == number  # found as a near-duplicate

    # The citizen follows the case on the public page with the number and the query code.
    page = client.get("/track").get_data(as_text=True)
    csrf = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', page).group(1)
    tracked = client.post(
        "/track", data={"csrf_token": csrf, "tracking_number": number, "query_code": code}
    )
    assert tracked.status_code == 200 and number in tracked.get_data(as_text=True)

    # Staff see where it came from on the case page.
    html = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    filed_line = re.search(r'<li class="event-api_filed">(.*?)</li>', html, flags=re.S)
    assert filed_line is not None, "the timeline does not show the Open311 filing"
    assert "Open311" in filed_line.group(1)
    assert "市生态环境局民声分局" in filed_line.group(1)  # the caller's service, as a hint


def test_staff_see_the_place_media_and_attributes_observers_no_key(
    client: Any, runtime: Any, login_as: Any
) -> None:
    from zoneinfo import ZoneInfo

    from triage.export import iter_records

    key = new_key(runtime)
    media = "https://img.example.com/p.jpg?a=1&b=<x>"
    r = post(client, key, address_string="幸福路12号 王小明家", media_url=media,
             **{"attribute[floor]": "3楼"}, **CONTACT)  # fmt: skip
    number = r.get_json()[0]["service_request_id"]

    html = login_as("supervisor").get(f"/board/cases/{number}").get_data(as_text=True)
    panel = re.search(r'<section class="open311-filed".*?</section>', html, flags=re.S)
    assert panel is not None, "the case page shows nothing of what the API sent"
    panel_html = panel.group(0)
    assert "幸福路12号 王小明家" in panel_html and "31.2304, 121.4737" in panel_html
    assert "3楼" in panel_html and key[:8] in panel_html and "市民App" in panel_html
    link = re.search(r'<a href="([^"]*)" rel="([^"]*)"', panel_html)
    assert link is not None and link.group(1) == media.replace("&", "&amp;").replace(
        "<", "&lt;"
    ).replace(">", "&gt;")
    assert {"noopener", "noreferrer"} <= set(link.group(2).split())
    assert "<img" not in panel_html and "<x>" not in html

    seen = login_as("observer").get(f"/board/cases/{number}").get_data(as_text=True)
    assert "幸福路12号" in seen and "王小明家" not in seen
    assert key[:8] not in seen and "市民App" not in seen and 'href="https://img' not in seen

    with runtime.sessions() as s:
        tz = ZoneInfo("Asia/Shanghai")
        (raw,) = list(iter_records(s, tz, masked=False))
        (masked,) = list(iter_records(s, tz, masked=True))
    assert raw["api_address"] == "幸福路12号 王小明家" and raw["api_media_url"] == media
    assert (raw["api_lat"], raw["api_long"]) == (31.2304, 121.4737)
    assert masked["api_address"].startswith("幸福路12号") and "王小明" not in masked["api_address"]


def test_xml_post_and_an_urgent_hazard_skip_the_queue_as_on_the_form(
    client: Any, runtime: Any
) -> None:
    key = new_key(runtime)
    r = post(
        client, key, "xml", service_code="safety",
        description="人民路加油站旁边燃气泄漏，味道很大，随时可能爆炸", address_string="人民路8号",
    )  # fmt: skip
    assert r.status_code == 201
    (row,) = xml_rows(r)
    assert row["service_request_id"].startswith("MS-") and len(row["query_code"]) == 6
    assert row["token"] and row["account_id"] == ""
    with runtime.sessions() as s:
        case = s.scalar(select(Case).where(Case.tracking_number == row["service_request_id"]))
        assert case.urgent and case.channel == "api"


def test_a_retry_within_the_window_gets_the_same_case(client: Any, runtime: Any) -> None:
    key, other_key = new_key(runtime), new_key(runtime, "邻区热线")
    first = post(client, key, device_id="phone-1")
    again = post(client, key, device_id="phone-1")
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.get_json() == first.get_json()  # same number, token and query code
    changed = post(client, key, device_id="phone-1", description=NOISE + "今天又来了。")
    other_device = post(client, key, device_id="phone-2")
    other_system = post(client, other_key, device_id="phone-1")
    by_account = [post(client, key, account_id="acct-9").get_json() for _ in range(2)]
    anonymous = [post(client, key).get_json() for _ in range(2)]
    numbers = {
        r.get_json()[0]["service_request_id"] for r in (first, changed, other_device, other_system)
    }
    assert len(numbers) == 4
    assert by_account[0] == by_account[1]
    assert anonymous[0][0]["service_request_id"] != anonymous[1][0]["service_request_id"]
    # A differing contact is another citizen on the same device: a new case and a new code.
    contact = [post(client, key, device_id="phone-3", **CONTACT).get_json()[0]]
    for changed_field in ({"phone": "13900001111"}, {"email": "li@example.com"},
                          {"first_name": "小红"}):  # fmt: skip
        contact.append(
            post(client, key, device_id="phone-3", **{**CONTACT, **changed_field}).get_json()[0]
        )
    contact.append(post(client, key, device_id="phone-3", **CONTACT).get_json()[0])
    assert len({c["service_request_id"] for c in contact[:4]}) == 4
    assert len({c["query_code"] for c in contact[:4]}) == 4
    assert contact[4] == contact[0]  # the first contact again: a retry
    with runtime.sessions() as s:
        assert len(s.scalars(select(Case).where(Case.channel == "api")).all()) == 11

    # Past the window the same request is a new report.
    with runtime.sessions() as s, s.begin():
        case = s.scalar(select(Case).where(Case.tracking_number == first.get_json()[0][
            "service_request_id"]))  # fmt: skip
        # As if filed 11 minutes ago: received then, in the window of that time.
        case.received_at -= timedelta(minutes=11)
        case.external_id = case.external_id.rsplit(":", 1)[0] + ":1"
    later = post(client, key, device_id="phone-1")
    assert later.status_code == 201
    assert later.get_json()[0]["service_request_id"] not in numbers


def test_retries_arriving_at_once_make_one_case(app: Any, runtime: Any) -> None:
    import threading

    key = new_key(runtime)
    barrier = threading.Barrier(4)
    answers: list[Any] = []

    def send() -> None:
        client = app.test_client()
        barrier.wait()
        answers.append(post(client, key, device_id="phone-1"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(a.status_code for a in answers) == [200, 200, 200, 201]
    assert len({a.get_json()[0]["service_request_id"] for a in answers}) == 1
    assert len({a.get_json()[0]["query_code"] for a in answers}) == 1
    with runtime.sessions() as s:
        assert len(s.scalars(select(Case)).all()) == 1


# -- reading requests ----------------------------------------------------------------------------


def _dispatch_and_reply(runtime: Any, number: str, reply: str) -> None:
    deadlines = runtime.settings.deadlines()
    now = datetime.now(UTC)
    with runtime.sessions() as s, s.begin():
        case = s.scalar(select(Case).where(Case.tracking_number == number))
        department = s.scalar(select(Department).where(Department.code == "environment"))
        assign_case(case, department, "supervisor", deadlines, now)
        case.start("environment", now)
        case.reply("environment", now, reply)


def test_read_back_by_id_token_and_list_public_fields_only_masked(
    client: Any, runtime: Any
) -> None:
    key = new_key(runtime)
    created = post(
        client, key, device_id="d", address_string="幸福路12号 王小明家 13812345678", **CONTACT
    ).get_json()[0]
    number, token = created["service_request_id"], created["token"]
    other = post(client, key, service_code="urban", description="小区电梯坏了一周没人修",
                 address_id="addr-7").get_json()[0]["service_request_id"]  # fmt: skip

    (one,) = client.get(f"{API}/requests/{number}.json").get_json()
    assert one["service_request_id"] == number and one["status"] == "open"
    assert one["service_code"] == "environment" or one["service_code"] is None
    assert "13812345678" not in one["description"] and "王小明" not in one["description"]
    assert "138****5678" in one["description"] and "饭店" in one["description"]
    assert one["address"].startswith("幸福路12号") and "13812345678" not in one["address"]
    assert "王小明" not in one["address"]
    assert (one["lat"], one["long"]) == (31.2304, 121.4737)
    assert one["requested_datetime"].endswith("+08:00") and one["expected_datetime"] is None
    text = client.get(f"{API}/requests/{number}.json").get_data(as_text=True)
    for secret in ("13812345678", "wang@example.com", "王小明", "小明", key, "api_key"):
        assert secret not in text
    (row,) = xml_rows(client.get(f"{API}/requests/{number.lower()}.xml"))
    assert row["service_request_id"] == number and row["description"] == one["description"]
    assert row["lat"] == "31.2304" and row["media_url"] == ""

    assert client.get(f"{API}/tokens/{token}.json").get_json() == [
        {"service_request_id": number, "token": token}
    ]
    assert xml_rows(client.get(f"{API}/tokens/{token}.xml")) == [
        {"service_request_id": number, "token": token}
    ]

    _dispatch_and_reply(
        runtime,
        number,
        "已联系王小明（13812345678），执法队已到现场处理，可拨打12345咨询，或找李队长13912345678。",
    )
    (one,) = client.get(f"{API}/requests/{number}.json").get_json()
    assert one["agency_responsible"] == "市生态环境局民声分局"
    assert one["service_code"] == "environment" and one["status"] == "open"  # replied
    assert "执法队已到现场处理" in one["status_notes"] and "12345" in one["status_notes"]
    assert "13812345678" not in one["status_notes"] and "王小明" not in one["status_notes"]
    # The list is public: any number in the reply is masked, not only the complainant's.
    assert "13912345678" not in one["status_notes"]
    assert one["updated_datetime"] >= one["requested_datetime"]

    listed = client.get(f"{API}/requests.json").get_json()
    assert [r["service_request_id"] for r in listed] == [other, number]  # newest first
    assert [r["service_request_id"] for r in xml_rows(client.get(f"{API}/requests.xml"))] == [
        other,
        number,
    ]
    only_urban = client.get(f"{API}/requests.json?service_code=urban").get_json()
    assert [r["service_request_id"] for r in only_urban] == [other]
    assert only_urban[0]["address_id"] == "addr-7" and only_urban[0]["address"] is None
    both = client.get(f"{API}/requests.json?service_request_id={number},{other},MS-2020-000009")
    assert {r["service_request_id"] for r in both.get_json()} == {number, other}
    closed = client.get(f"{API}/requests.json?status=closed").get_json()
    assert closed == []
    today = datetime.now(UTC).astimezone().date()
    since, until = today - timedelta(days=1), today + timedelta(days=1)
    window = client.get(f"{API}/requests.json?start_date={since}&end_date={until}").get_json()
    assert len(window) == 2
    past = client.get(f"{API}/requests.json?end_date=2020-01-01").get_json()
    assert past == []


def test_cases_of_other_channels_are_listed_without_any_text(client: Any, runtime: Any) -> None:
    web_number, _code = submit_complaint(
        client, "幸福路12号的饭店夜里排油烟，噪音很大。我是王小明。", subject="饭店噪音"
    )
    _dispatch_and_reply(runtime, web_number, "执法队已到幸福路12号现场处理。")
    key = new_key(runtime)
    api_number = post(client, key, address_string="幸福路12号")
    api_number = api_number.get_json()[0]["service_request_id"]
    _dispatch_and_reply(runtime, api_number, "执法队已到幸福路12号现场处理。")

    (web,) = client.get(f"{API}/requests/{web_number}.json").get_json()
    assert web["status"] == "open" and web["service_code"] == "environment"
    assert web["agency_responsible"] == "市生态环境局民声分局" and web["requested_datetime"]
    for name in ("description", "status_notes", "address", "address_id", "lat", "long"):
        assert web[name] is None, name
    (row,) = [r for r in xml_rows(client.get(f"{API}/requests.xml"))
              if r["service_request_id"] == web_number]  # fmt: skip
    assert row["description"] == "" and row["status_notes"] == "" and row["status"] == "open"

    (api,) = client.get(f"{API}/requests/{api_number}.json").get_json()
    assert "饭店" in api["description"] and "138****5678" in api["description"]
    assert "现场处理" in api["status_notes"] and api["address"] == "幸福路12号"


def test_service_code_is_the_callers_until_dispatch_then_the_departments(
    client: Any, runtime: Any
) -> None:
    key = new_key(runtime)
    number = post(client, key, service_code="urban").get_json()[0]["service_request_id"]

    def codes(query: str) -> list[str]:
        return [
            r["service_request_id"] for r in client.get(f"{API}/requests.json?{query}").get_json()
        ]

    (one,) = client.get(f"{API}/requests/{number}.json").get_json()
    assert one["service_code"] == "urban" and one["service_name"] == "城乡建设"
    assert codes("service_code=urban") == [number] and codes("service_code=environment") == []

    _dispatch_and_reply(runtime, number, "执法队已到现场处理。")  # to environment
    (one,) = client.get(f"{API}/requests/{number}.json").get_json()
    assert one["service_code"] == "environment"
    assert codes("service_code=environment") == [number] and codes("service_code=urban") == []
    assert codes("service_code=urban,environment") == [number]


def test_the_list_keeps_to_90_days_and_pages(client: Any, runtime: Any) -> None:
    from intake.submission import Channel, Submission

    now = datetime.now(UTC)
    policy = runtime.intake_policy()
    with runtime.sessions() as s, s.begin():
        for i, days in enumerate((1, 2, 3, 4, 5, 95)):
            register(
                s,
                Submission(
                    channel=Channel.PHONE,
                    external_id=f"call-{i}",
                    received_at=now - timedelta(days=days),
                    subject="路灯",
                    body=f"第{i}条：明德路的路灯坏了",
                ),
                policy,
                now,
            )
    listed = client.get(f"{API}/requests.json").get_json()
    assert len(listed) == 5  # the one of 95 days ago is outside the default window
    assert all(r["address"] is None and r["lat"] is None for r in listed)
    pages = [
        client.get(f"{API}/requests.json?page_size=2&page={p}").get_json() for p in (1, 2, 3, 4)
    ]
    assert [len(p) for p in pages] == [2, 2, 1, 0]
    assert [r["service_request_id"] for p in pages for r in p] == [
        r["service_request_id"] for r in listed
    ]
    too_many = client.get(f"{API}/requests.json?page_size=51")
    assert error_of(too_many, "json")[0] == 400
    old = client.get(f"{API}/requests.json?start_date={(now - timedelta(days=100)).date()}")
    assert len(old.get_json()) == 6


# -- keys, errors and limits ---------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["json", "xml"])
def test_errors_come_in_the_spec_format_with_the_right_status(
    client: Any, runtime: Any, fmt: str
) -> None:
    key = new_key(runtime)
    status, text = error_of(post(client, key, fmt, service_code=""), fmt)
    assert status == 400 and "service_code" in text
    status, text = error_of(post(client, key, fmt, lat="", long=""), fmt)
    assert status == 400 and "location" in text
    assert error_of(post(client, "", fmt), fmt)[0] == 403
    assert error_of(post(client, "ms_wrong", fmt), fmt)[0] == 403
    assert error_of(post(client, key[:-2], fmt), fmt)[0] == 403
    wrong = {"X-Api-Key": "ms_wrong"}
    assert error_of(client.get(f"{API}/requests.{fmt}", headers=wrong), fmt)[0] == 403
    status, text = error_of(client.get(f"{API}/requests.{fmt}?api_key={key}"), fmt)
    assert status == 400 and "X-Api-Key" in text  # never in the address
    assert error_of(client.get(f"{API}/requests/MS-2026-999999.{fmt}"), fmt)[0] == 404
    assert error_of(client.get(f"{API}/requests/nonsense.{fmt}"), fmt)[0] == 404
    assert error_of(client.get(f"{API}/tokens/MS-2026-000001_0000.{fmt}"), fmt)[0] == 404
    assert error_of(client.get(f"{API}/nothing.{fmt}"), fmt)[0] == 404
    wrong_method = client.delete(f"{API}/requests.{fmt}")
    assert error_of(wrong_method, fmt)[0] == 405
    allowed = set(wrong_method.headers["Allow"].split(", "))
    assert {"GET", "POST"} <= allowed and "DELETE" not in allowed
    with runtime.sessions() as s, s.begin():
        revoke_key(s, find_key(s, "市民App"), datetime.now(UTC))
    status, text = error_of(post(client, key, fmt), fmt)
    assert status == 403 and "revoked" in text
    with runtime.sessions() as s:
        assert s.scalars(select(Case)).all() == []  # no error left a case behind


def test_a_body_over_the_limit_is_refused_before_it_is_read(client: Any, runtime: Any) -> None:
    import io

    key = new_key(runtime)
    big = {"api_key": key, "service_code": "environment", "description": NOISE,
           "lat": "31.2", "long": "121.4", "attribute[x]": "路" * 30_000}  # fmt: skip
    for fmt in ("json", "xml"):
        status, text = error_of(client.post(f"{API}/requests.{fmt}", data=big), fmt)
        assert status == 413 and "64 KiB" in text
    # Without a Content-Length (chunked), reading stops at the limit.
    body = b"api_key=" + key.encode() + b"&service_code=environment&description=" + b"x" * 70_000
    r = client.post(
        f"{API}/requests.json",
        input_stream=io.BytesIO(body),
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},  # as a server passes chunks on
    )
    assert error_of(r, "json")[0] == 413
    with runtime.sessions() as s:
        assert s.scalars(select(Case)).all() == []
    small = body[: body.index(b"=x") + 1] + NOISE.encode() + b"&lat=31.2&long=121.4"
    r = client.post(
        f"{API}/requests.json",
        input_stream=io.BytesIO(small),
        content_type="application/x-www-form-urlencoded",
        headers={"Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True},
    )
    assert r.status_code == 201, r.get_data(as_text=True)
    assert post(client, key).status_code == 201  # a usual request still goes through


def test_smaller_things_clients_and_browsers_notice(client: Any, runtime: Any) -> None:
    key = new_key(runtime)
    media = "https://img.example.com/p.jpg"
    number = post(client, key, media_url=media).get_json()[0]["service_request_id"]

    xml_answer = client.get(f"{API}/requests/{number}.xml")
    assert xml_answer.get_data().startswith(b'<?xml version="1.0" encoding="UTF-8"?>')
    assert xml_rows(xml_answer)[0]["media_url"] == media
    assert client.get(f"{API}/requests/{number}.json").get_json()[0]["media_url"] == media

    english = client.get(f"{API}/services.json", headers={"Accept-Language": "en-US,en;q=0.9"})
    by_code = {s["service_code"]: s for s in english.get_json()}
    assert "working days" in by_code["environment"]["description"]
    assert by_code["environment"]["service_name"] == "Ecology and Environment Bureau"
    chinese = client.get(f"{API}/services.json?lang=zh", headers={"Accept-Language": "en"})
    assert "工作日" in chinese.get_json()[0]["description"]  # ?lang wins

    for path in ("discovery.json", "services.xml", f"requests/{number}.json", "requests.json"):
        assert client.get(f"{API}/{path}").headers["Access-Control-Allow-Origin"] == "*", path
    assert "Access-Control-Allow-Origin" not in post(client, key).headers
    preflight = client.options(f"{API}/requests.json")
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET"
    assert "X-Api-Key" in preflight.headers["Access-Control-Allow-Headers"]

    as_json = client.post(
        f"{API}/requests.json",
        json={"api_key": key, "service_code": "environment", "description": NOISE},
    )
    status, text = error_of(as_json, "json")
    assert status == 400 and "application/x-www-form-urlencoded" in text


def test_a_switched_off_interface_has_no_description_either(tmp_path: Any, db_url: str) -> None:
    from web import create_app

    app = create_app(make_settings(tmp_path, db_url, open311={"enabled": False}), TESTING=True)
    try:
        client = app.test_client()
        assert client.get(f"{API}/openapi.json").status_code == 404
        assert client.get(f"{API}/services.json").status_code == 404
    finally:
        app.extensions["minsheng"].engine.dispose()


def test_the_api_needs_no_csrf_token_but_every_other_form_does(client: Any, runtime: Any) -> None:
    key = new_key(runtime)
    assert post(client, key).status_code == 201  # no csrf_token sent
    r = client.post("/complain", data={"subject": "路灯", "body": "路灯坏了三天了"})
    assert r.status_code == 400


def test_each_key_is_rate_limited_and_so_are_reads_without_one(tmp_path: Any, db_url: str) -> None:
    from web import create_app

    settings = make_settings(
        tmp_path,
        db_url,
        open311={"requests_per_minute": 3, "anonymous_requests_per_minute": 2,
                 "jurisdiction_id": "minsheng.example.gov.cn"},
    )  # fmt: skip
    app = create_app(settings, TESTING=True)
    client = app.test_client()
    runtime = app.extensions["minsheng"]
    try:
        busy, quiet = new_key(runtime, "busy"), new_key(runtime, "quiet")
        answers = [
            client.get(f"{API}/services.json", headers={"X-Api-Key": busy}) for _ in range(3)
        ]
        assert [a.status_code for a in answers] == [200, 200, 200]
        refused = post(client, busy, "xml")
        assert error_of(refused, "xml")[0] == 429 and int(refused.headers["Retry-After"]) >= 1
        assert post(client, quiet).status_code == 201  # another key has its own limit
        assert [client.get(f"{API}/services.json").status_code for _ in range(3)] == [
            200,
            200,
            429,
        ]
        # Guessing keys from one address is slowed down like reading without a key.
        guesses = [
            client.get(f"{API}/services.json", headers={"X-Api-Key": f"ms_guess{i}"})
            for i in range(3)
        ]
        assert [g.status_code for g in guesses] == [403, 403, 429]
        # The configured jurisdiction, and no other.
        ok = client.get(
            f"{API}/services.json?jurisdiction_id=minsheng.example.gov.cn",
            headers={"X-Api-Key": quiet},
        )
        assert ok.status_code == 200
        other = client.get(
            f"{API}/services.json?jurisdiction_id=elsewhere.gov", headers={"X-Api-Key": quiet}
        )
        assert error_of(other, "json")[0] == 404
    finally:
        runtime.engine.dispose()


MALFORMED: list[tuple[str, str, dict[str, str]]] = [
    ("post", "requests.json", {"lat": "abc"}),
    ("post", "requests.xml", {"lat": "91", "long": "0"}),
    ("post", "requests.json", {"lat": "NaN", "long": "NaN"}),
    ("post", "requests.json", {"lat": "1e308", "long": "1e308"}),
    ("post", "requests.json", {"long": "-181"}),
    ("post", "requests.json", {"description": "路" * 4001}),
    ("post", "requests.xml", {"description": "路" * 600_000}),
    ("post", "requests.json", {"description": "路灯坏了\x00三天"}),
    ("post", "requests.json", {"description": "\x00\x01\x02"}),
    ("post", "requests.json", {"service_code": "urban\x00"}),
    ("post", "requests.json", {"service_code": "potholes"}),
    ("post", "requests.json", {"service_code": "' OR 1=1 --"}),
    ("post", "requests.json", {"api_key": "ms_\x00"}),
    ("post", "requests.json", {"api_key": "x" * 5000}),
    ("post", "requests.json", {"device_id": "a\nb"}),
    ("post", "requests.json", {"email": "@@", "phone": "电话"}),
    ("post", "requests.json", {"media_url": "file:///etc/passwd"}),
    ("post", "requests.json", {"attribute[floor]": "3\x00"}),
    ("post", "requests.json", {"first_name": "名" * 500}),
    ("post", "requests.json", {"jurisdiction_id": "\x00"}),
    ("get", "requests.json?start_date=2026-13-45", {}),
    ("get", "requests.json?start_date=2026-02-30", {}),
    ("get", "requests.xml?end_date=2026-11-30T10:00:00%2B24:00", {}),
    ("get", "requests.json?status=", {}),
    ("get", "requests.json?start_date=%00", {}),
    ("get", "requests.json?page=0", {}),
    ("get", "requests.json?page=-3", {}),
    ("get", "requests.json?page=abc", {}),
    ("get", "requests.json?page=" + "9" * 40, {}),
    ("get", "requests.json?page_size=0", {}),
    ("get", "requests.json?page_size=1000000", {}),
    ("get", "requests.json?status=pending", {}),
    ("get", "requests.json?service_code=nope", {}),
    ("get", "requests.json?service_request_id=" + ",".join(f"MS-2026-{i}" for i in range(300)), {}),
    ("get", "requests/MS-2026-99999999999999.json", {}),
    ("get", "requests/%E8%B7%AF.xml", {}),
    ("get", "requests/..%2F..%2Fetc.json", {}),
    ("get", "tokens/_.json", {}),
    ("get", "tokens/" + "x" * 3000 + ".xml", {}),
    ("get", "services/%00.json", {}),
    ("get", "services/urban.html", {}),
    ("get", "requests.json?api_key=%00", {}),
    ("get", "requests.json?api_key=ms_x", {}),
    ("get", "requests%0A.json", {}),
    ("put", "requests.json", {}),
    ("patch", "services.xml", {}),
]


def test_malformed_input_never_gets_a_server_error(client: Any, runtime: Any) -> None:
    key = new_key(runtime)
    base = {"api_key": key, "service_code": "environment", "description": NOISE,
            "lat": "31.2", "long": "121.4"}  # fmt: skip
    for method, path, fields in MALFORMED:
        url = f"{API}/{path}"
        if method == "post":
            r = client.post(url, data={**base, **fields})
        else:
            r = getattr(client, method)(url)
        assert r.status_code in (400, 403, 404, 405, 413), (method, path, fields, r.status_code)
        fmt = "xml" if ".xml" in path.split("?")[0] else "json"
        error_of(r, fmt)
    with runtime.sessions() as s:
        assert s.scalars(select(Case)).all() == []
        assert s.scalars(select(CaseEvent)).all() == []


def test_openapi_describes_every_endpoint(client: Any) -> None:
    doc = client.get(f"{API}/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    assert doc["servers"][0]["url"].endswith("/open311/v2")
    assert set(doc["paths"]) == {
        "/discovery.{format}",
        "/services.{format}",
        "/services/{service_code}.{format}",
        "/requests.{format}",
        "/requests/{service_request_id}.{format}",
        "/tokens/{token}.{format}",
    }
    assert set(doc["paths"]["/requests.{format}"]) == {"get", "post"}
    post_ = doc["paths"]["/requests.{format}"]["post"]
    codes = post_["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
    assert "environment" in codes["properties"]["service_code"]["enum"]
    assert {"201", "400", "403", "429"} <= set(post_["responses"])
    scheme = doc["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["in"], scheme["name"]) == ("header", "X-Api-Key")
    reads = [p for op in doc["paths"].values() for m, o in op.items() if m == "get"
             for p in o["parameters"]]  # fmt: skip
    assert not any(p["in"] == "query" and p["name"] == "api_key" for p in reads)


def test_a_name_the_caller_gave_on_a_later_call_is_masked_in_the_public_list(
    client: Any, runtime: Any
) -> None:
    """The public GeoReport list masks every name the caller gave, as the case page does:
    one given on a repeat call too, not only the contact's."""
    key = new_key(runtime)
    number = post(
        client, key, description="幸福路饭店噪音很大，邻居欧阳娜娜也被吵得睡不着", **CONTACT
    ).get_json()[0]["service_request_id"]
    with runtime.sessions() as s, s.begin():
        case = s.scalars(select(Case).where(Case.tracking_number == number)).one()
        case.urge("system", datetime.now(UTC), "再次来电", caller_name="欧阳娜娜")
    (one,) = client.get(f"{API}/requests/{number}.json").get_json()
    assert "欧阳娜娜" not in one["description"] and "饭店噪音" in one["description"]
    listed = client.get(f"{API}/requests.json").get_data(as_text=True)
    assert "欧阳娜娜" not in listed and number in listed
