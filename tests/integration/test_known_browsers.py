"""A browser that has shown it holds a tracking number (it submitted the case, or looked it
up with the right code) or signed in with a username cannot be locked out of it by somebody
else's guessing: not by guessers on other addresses, nor by one behind the same address (an
office's NAT). Browsers that have shown nothing stay limited. Each test plays the attacker
first, then counts what the owner, the neighbour and a stranger's browser get.
"""

from __future__ import annotations

from typing import Any

import pytest
from flask import make_response

from tests.conftest import password_of
from tests.integration.helpers import flashes, submit_complaint
from tests.integration.test_throttle import HOME, WRONG, lookup, sign_in
from web.throttle import remember_tracking_number


@pytest.fixture
def fresh(app: Any) -> Any:
    """A new browser each call: it has shown nothing."""
    return app.test_client


def message_of(response: Any) -> str:
    return " ".join(flashes(response.get_data(as_text=True)))


def test_guessers_on_two_addresses_do_not_lock_the_owner_out(app: Any, fresh: Any) -> None:
    """The reported attack: five wrong codes from each of two addresses used up the number's
    limit, and the owner with the right code got 429 for an hour."""
    owner = fresh()
    number, code = submit_complaint(fresh(), "小区门口的垃圾桶满了没人清运，气味很大。")
    assert lookup(owner, number, code, ip="203.0.113.8").status_code == 200
    cookie = owner.get_cookie(f"minsheng_track_{number}", path="/track")
    assert cookie is not None and cookie.http_only and cookie.path == "/track"

    attacker = [lookup(fresh(), number, WRONG, ip=ip).status_code for ip in ("198.51.100.1",) * 5]
    attacker += [lookup(fresh(), number, WRONG, ip="198.51.100.2").status_code for _ in range(5)]
    attacker += [lookup(fresh(), number, WRONG, ip="198.51.100.3").status_code for _ in range(3)]
    assert attacker == [404] * 10 + [429] * 3

    # The owner's browser gets in, from its home and from a café.
    for ip in ("203.0.113.8", "192.0.2.99"):
        page = lookup(owner, number, code, ip=ip)
        assert page.status_code == 200, message_of(page)
        assert number in page.get_data(as_text=True)
    # A browser that has shown nothing waits, even with the right code, and is told that
    # the hotline can give the progress and that the browser it used before still works.
    stranger = lookup(fresh(), number, code, ip="203.0.113.50")
    assert stranger.status_code == 429
    assert "热线12345" in message_of(stranger)
    assert "热线可告知办理进度" in message_of(stranger)
    assert "曾成功查询过的浏览器仍可查询" in message_of(stranger)


def test_the_owners_own_wrong_codes_still_count(app: Any, fresh: Any) -> None:
    owner = fresh()
    number, code = submit_complaint(fresh(), "楼下烧烤店油烟直排，窗户都不敢开。")
    assert lookup(owner, number, code).status_code == 200
    statuses = [lookup(owner, number, WRONG).status_code for _ in range(7)]
    assert statuses == [404] * 5 + [429] * 2
    assert lookup(owner, number, code).status_code == 429


def test_a_forged_or_borrowed_cookie_exempts_nobody(app: Any, fresh: Any) -> None:
    number, code = submit_complaint(fresh(), "公园健身器材坏了，有孩子被夹伤。")
    other, other_code = submit_complaint(fresh(), "路边共享单车堆满了人行道。")
    # A browser known for another case only.
    neighbour = fresh()
    assert lookup(neighbour, other, other_code).status_code == 200
    for i in range(10):
        lookup(fresh(), number, WRONG, ip=f"198.51.100.{i}")

    forged = fresh()
    forged.set_cookie(f"minsheng_track_{number}", "0" * 32, path="/track")
    copied = fresh()
    copied.set_cookie(
        f"minsheng_track_{number}",
        neighbour.get_cookie(f"minsheng_track_{other}", path="/track").value,
        path="/track",
    )
    for browser in (forged, copied, neighbour):
        assert lookup(browser, number, code, ip="203.0.113.60").status_code == 429


def test_the_browser_that_submitted_the_case_is_known(app: Any, fresh: Any) -> None:
    """What the receipt does (`remember_tracking_number` on the answer to the form) makes a
    browser known without a lookup."""
    number, code = submit_complaint(fresh(), "夜里两点还有渣土车经过，噪音很大。")
    with app.test_request_context("/complain", method="POST"):
        receipt = remember_tracking_number(make_response("receipt"), number)
        header = receipt.headers["Set-Cookie"]
    assert header.startswith(f"minsheng_track_{number}=")
    assert "HttpOnly" in header and "Path=/track" in header and "SameSite=Lax" in header
    submitter = fresh()
    submitter.set_cookie(
        f"minsheng_track_{number}", header.split(";")[0].split("=", 1)[1], path="/track"
    )
    for i in range(12):
        lookup(fresh(), number, WRONG, ip=f"198.51.100.{i}")
    assert lookup(fresh(), number, code).status_code == 429
    assert lookup(submitter, number, code).status_code == 200


def test_one_address_guessing_many_numbers_does_not_lock_out_the_office(
    app: Any, fresh: Any
) -> None:
    """An office behind one NAT: somebody there enumerates numbers; colleagues whose browsers
    know their case still look it up; a browser that has shown nothing is limited."""
    colleague = fresh()
    own, own_code = submit_complaint(fresh(), "单位门口的消防通道被私家车占了。")
    assert lookup(colleague, own, own_code, ip=HOME).status_code == 200
    other, other_code = submit_complaint(fresh(), "小区泳池的水很浑浊，有异味。")

    guesser = fresh()
    statuses = [lookup(guesser, f"MS-2026-{800000 + i}", WRONG).status_code for i in range(32)]
    assert statuses == [404] * 30 + [429] * 2

    assert lookup(colleague, own, own_code, ip=HOME).status_code == 200
    # Another colleague's typo on their own case is judged, not refused.
    assert lookup(colleague, own, WRONG, ip=HOME).status_code == 404
    # A browser that never showed it holds a number is still stopped at this address ...
    unknown = lookup(fresh(), other, other_code, ip=HOME)
    assert unknown.status_code == 429
    assert "您所在网络的查询错误次数过多" in message_of(unknown)
    assert "热线可告知办理进度" in message_of(unknown)
    # ... and the guesser's own browser, which is known for nothing, too.
    assert lookup(guesser, "MS-2026-700001", WRONG).status_code == 429


def test_password_spraying_from_the_office_does_not_lock_out_colleagues(app: Any) -> None:
    """35 sprayed sign-ins from the office's one address; colleagues whose browsers signed
    in before still sign in; a browser that never did waits, and is told why."""
    colleague = app.test_client()
    assert sign_in(colleague, "urban", password_of("urban")).status_code == 302
    second = app.test_client()
    assert sign_in(second, "supervisor", password_of("supervisor")).status_code == 302

    sprayer = app.test_client()
    statuses = [sign_in(sprayer, f"staff{i:02d}", "Spring2026!").status_code for i in range(35)]
    assert statuses == [401] * 30 + [429] * 5

    assert sign_in(colleague, "urban", password_of("urban")).status_code == 302
    assert sign_in(second, "Supervisor", password_of("supervisor")).status_code == 302
    # The device cookie is for one username: it does not let the sprayer's guesses through.
    assert sign_in(colleague, "admin", "Spring2026!").status_code == 429
    newcomer = sign_in(app.test_client(), "admin", password_of("admin"))
    assert newcomer.status_code == 429
    assert "您所在网络的登录失败次数过多" in message_of(newcomer)
    # A known browser's own wrong passwords are judged, and limited per address.
    wrong = [sign_in(second, "supervisor", "not-it-2026").status_code for _ in range(11)]
    assert wrong == [401] * 10 + [429]
