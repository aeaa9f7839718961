"""Open311 without a database: what a client may send, the XML every answer becomes, the
tokens, and the services made of the configured categories."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from xml.etree import ElementTree as ET
from zoneinfo import ZoneInfo

import pytest

from tests.conftest import base_config
from web.open311.fields import DEFAULT_WINDOW, parse_list_query, parse_new_request
from web.open311.formats import ApiError, to_xml
from web.open311.registration import number_of_token, request_token, subject_of
from web.open311.services import Service, services_of
from web.settings import settings_from_dict

ZONE = ZoneInfo("Asia/Shanghai")
NOW = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)
SERVICES = [
    Service("urban", "城乡建设", "urban", "住建局", "5 days", ("物业",)),
    Service("environment", "环境保护", "environment", "环境局", "5 days", ("噪音",)),
]
GOOD = {
    "service_code": "environment",
    "description": "幸福路的饭店每天夜里油烟和噪音扰民",
    "lat": "31.2304",
    "long": "121.4737",
}


def fails_on(form: dict[str, str], field: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_new_request(form, SERVICES)
    assert caught.value.status == 400
    assert caught.value.description.startswith(field), caught.value.description


def test_a_good_request_is_cleaned_and_named_as_at_home() -> None:
    new = parse_new_request(
        {
            **GOOD,
            "description": "  幸福路的饭店\r\n每天夜里油烟扰民  ",
            "first_name": "小明",
            "last_name": "王",
            "phone": "138 0013 8000",
            "email": "Wang@Example.com",
            "attribute[floor]": "3",
        },
        SERVICES,
    )
    assert new.service.code == "environment"
    assert new.description == "幸福路的饭店\n每天夜里油烟扰民"
    assert (new.name, new.phone, new.email) == ("王小明", "13800138000", "Wang@example.com")
    assert new.location() == {"lat": 31.2304, "long": 121.4737}
    assert new.attributes == {"floor": "3"}
    kept = parse_new_request({**GOOD, "phone": "99 1234 5678 9"}, SERVICES)
    assert kept.phone == "99 1234 5678 9"  # not a form's phone, but a person can call it
    western = parse_new_request({**GOOD, "first_name": "John", "last_name": "Smith"}, SERVICES)
    assert western.name == "John Smith"
    by_address = parse_new_request(
        {"service_code": "urban", "description": "电梯坏了一周", "address_string": "幸福路1号"},
        SERVICES,
    )
    assert by_address.location() == {"address_string": "幸福路1号"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"service_code": ""}, "service_code"),
        ({"service_code": "potholes"}, "service_code"),
        ({"service_code": "urban\x00"}, "service_code"),
        ({"description": ""}, "description"),
        ({"description": "短"}, "description"),
        ({"description": "路" * 4001}, "description"),
        ({"description": "a\u0301" * 2001}, "description"),  # 4,002 sent, 2,001 after NFC
        ({"description": "路" * 100_000}, "description"),
        ({"description": "路灯坏了\x00"}, "description"),
        ({"lat": "abc"}, "lat"),
        ({"lat": "91"}, "lat"),
        ({"lat": "NaN"}, "lat"),
        ({"lat": "1e2"}, "lat"),
        ({"lat": "0x10"}, "lat"),
        ({"lat": "1_0"}, "lat"),
        ({"long": "-180.5"}, "long"),
        ({"long": ""}, "lat/long"),
        ({"lat": "", "long": ""}, "location"),
        ({"email": "not-an-address"}, "email"),
        ({"phone": "12"}, "phone"),
        ({"media_url": "javascript:alert(1)"}, "media_url"),
        ({"device_id": "a\nb"}, "device_id"),
        ({"device_id": "a\x85b"}, "device_id"),
        ({"device_id": "x" * 101}, "device_id"),
        ({f"attribute[a{i}]": "1" for i in range(21)}, "attribute"),
    ],
)
def test_a_wrong_field_is_a_400_that_names_it(change: dict[str, str], field: str) -> None:
    fails_on({**GOOD, **change}, field)


def test_list_filters_default_to_the_last_90_days_and_check_every_value() -> None:
    q = parse_list_query({}, SERVICES, ZONE, NOW, 50)
    assert (q.start, q.end, q.page, q.page_size) == (NOW - DEFAULT_WINDOW, NOW, 1, 50)
    q = parse_list_query({"end_date": "2026-06-30"}, SERVICES, ZONE, NOW, 50)
    assert q.end == datetime(2026, 6, 30, 23, 59, 59, 999999, ZONE).astimezone(UTC)
    assert q.start == q.end - timedelta(days=90)
    q = parse_list_query(
        {"start_date": "2026-11-01T00:00:00Z", "service_code": "urban,environment",
         "status": "closed", "page": "3", "page_size": "10"},
        SERVICES, ZONE, NOW, 50,
    )  # fmt: skip
    assert q.start == datetime(2026, 11, 1, tzinfo=UTC) and q.end is None
    assert (q.service_codes, q.status, q.page, q.page_size) == (
        ("urban", "environment"),
        "closed",
        3,
        10,
    )
    # A window that ends before it starts is empty, not wrong.
    q = parse_list_query({"start_date": "2026-11-02", "end_date": "2026-11-01"}, SERVICES, ZONE,
                         NOW, 50)  # fmt: skip
    assert q.start is not None and q.end is not None and q.start > q.end
    # Leap seconds, long fractions, lower case; times beyond UTC's range are its edges.
    q = parse_list_query(
        {"start_date": "0001-01-01T00:00:00+14:00", "end_date": "2026-06-30t23:59:60.1234567z"},
        SERVICES, ZONE, NOW, 50,
    )  # fmt: skip
    assert q.start == datetime.min.replace(tzinfo=UTC)
    assert q.end == datetime(2026, 6, 30, 23, 59, 59, 123456, tzinfo=UTC)
    q = parse_list_query({"end_date": "9999-12-31T23:59:59-12:00"}, SERVICES, ZONE, NOW, 50)
    assert q.end == datetime.max.replace(tzinfo=UTC)
    ids = parse_list_query({"service_request_id": "MS-2026-000001, MS-2026-000002"}, SERVICES,
                           ZONE, NOW, 50)  # fmt: skip
    assert ids.numbers == ("MS-2026-000001", "MS-2026-000002")

    for bad in (
        {"start_date": "2026-13-01"},
        {"start_date": "2026-02-30"},
        {"start_date": "2026-11-30T25:00:00Z"},
        {"end_date": "2026-11-30T10:00:00+24:00"},
        {"end_date": ""},
        {"status": ""},
        {"page": ""},
        {"start_date": "yesterday"},
        {"page": "0"},
        {"page": "-1"},
        {"page": "1.5"},
        {"page": "99999999999999999999"},
        {"page_size": "51"},
        {"status": "pending"},
        {"service_code": "nope"},
        {"service_request_id": ",".join(f"MS-2026-{i:06d}" for i in range(101))},
    ):
        with pytest.raises(ApiError) as caught:
            parse_list_query(bad, SERVICES, ZONE, NOW, 50)
        assert caught.value.status == 400, bad


def test_xml_answers_parse_whatever_the_text_holds() -> None:
    body = to_xml(
        "service_requests",
        [{"service_request_id": "MS-1", "description": "a\x00b\x1bc <&> 路灯", "lat": None,
          "ok": True, "formats": ["text/xml", "application/json"]}],
    )  # fmt: skip
    root = ET.fromstring(body)
    (request,) = root.findall("request")
    assert request.findtext("description") == "abc <&> 路灯"
    assert request.findtext("lat") == "" and request.findtext("ok") == "true"
    assert [f.text for f in request.find("formats")] == ["text/xml", "application/json"]


def test_a_token_names_its_number_and_cannot_be_made_up() -> None:
    token = request_token("secret", "MS-2026-000001")
    assert number_of_token("secret", token) == "MS-2026-000001"
    assert number_of_token("other secret", token) is None
    assert number_of_token("secret", "MS-2026-000002" + token[len("MS-2026-000001") :]) is None
    for junk in ("", "_", "MS-2026-000001", "x" * 500, "路_灯"):
        assert number_of_token("secret", junk) is None


def test_one_service_per_category_with_the_departments_commitment() -> None:
    raw = base_config()
    raw["departments"][0]["labels"] = ["城乡建设", "物业管理", "Lifts"]
    settings = settings_from_dict(raw, base_dir=".", source="test")
    services = services_of(settings)
    codes = [s.code for s in services]
    assert len(codes) == len(set(codes))
    urban = [s for s in services if s.department_code == "urban"]
    assert [s.name for s in urban] == ["城乡建设", "物业管理", "Lifts"]
    assert urban[2].code == "urban-lifts" and urban[0].code.startswith("urban-")
    labour = next(s for s in services if s.department_code == "labour")
    assert labour.code == "labour" and "5 working days" in labour.description
    safety = next(s for s in services if s.department_code == "safety")
    assert "3 working days" in safety.description


def test_the_subject_is_the_first_line_shortened() -> None:
    assert subject_of("路灯坏了\n三天了") == "路灯坏了"
    long = subject_of("很" * 100)
    assert len(long) == 40 and long.endswith("...")


def test_a_media_url_is_kept_as_sent() -> None:
    url = "https://img.example.com/õ¨ｆ.jpg?a=1"  # NFKC would make ¨ a space, ｆ an f
    new = parse_new_request({**GOOD, "media_url": url}, SERVICES)
    assert new.media_url == url
    for wrong in ("https://x.example/\u202eexe.jpg", "javascript:alert(1)", "https://a b"):
        with pytest.raises(ApiError):
            parse_new_request({**GOOD, "media_url": wrong}, SERVICES)


def test_a_plus_of_an_offset_that_came_as_a_space_is_read_as_plus() -> None:
    # `?start_date=2026-11-30T10:00:00+08:00` unencoded: the query string gives a space.
    args = {"start_date": "2026-11-30T10:00:00 08:00", "end_date": "2026-11-30T12:00:00 0800"}
    q = parse_list_query(args, SERVICES, ZONE, NOW, 50)
    assert q.start == datetime(2026, 11, 30, 2, 0, tzinfo=UTC)
    assert q.end == datetime(2026, 11, 30, 4, 0, tzinfo=UTC)
    minus = parse_list_query({"start_date": "2026-11-30T10:00:00-05:00"}, SERVICES, ZONE, NOW, 50)
    assert minus.start == datetime(2026, 11, 30, 15, 0, tzinfo=UTC)
