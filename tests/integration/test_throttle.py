"""Limits that stop whoever guesses and not the people next to them.

Progress lookups (受理编号 + 查询码) are limited per address and number, per number across
addresses and per address across numbers; sign-ins per address and username and per address
across usernames. Each test counts what an attacker gets through: the guesses that were
judged (404 / 401) rather than refused (429); the concurrency tests send them all at once to
a real threaded server.
"""

from __future__ import annotations

import re
import statistics
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from http.cookiejar import CookieJar
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode
from urllib.request import HTTPCookieProcessor, HTTPRedirectHandler, OpenerDirector, build_opener

from sqlalchemy import select, update
from werkzeug.serving import make_server

from tests.conftest import csrf_from, password_of
from tests.integration.helpers import flashes, submit_complaint
from triage.models import User

HOME = "192.0.2.10"  # a household or office: everybody in it shares this address
WRONG = "ZZZZZZ"


def lookup(client: Any, number: str, code: str, ip: str = HOME) -> Any:
    env = {"REMOTE_ADDR": ip}
    token = csrf_from(client.get("/track", environ_base=env).get_data(as_text=True))
    data = {"csrf_token": token, "tracking_number": number, "query_code": code}
    return client.post("/track", data=data, environ_base=env)


def sign_in(client: Any, username: str, password: str, ip: str = HOME) -> Any:
    env = {"REMOTE_ADDR": ip}
    token = csrf_from(client.get("/login", environ_base=env).get_data(as_text=True))
    data = {"csrf_token": token, "username": username, "password": password}
    return client.post("/login", data=data, environ_base=env)


# -- progress lookup ---------------------------------------------------------------------


def test_own_lookups_in_between_do_not_reset_guessing(client: Any) -> None:
    """The reported attack: four guesses at a stranger's number, then one lookup of one's
    own case, again and again. Before, each own lookup cleared the count."""
    stranger, _code = submit_complaint(
        client.application.test_client(), "小区门口的路灯坏了两个星期，晚上很黑。"
    )
    own, own_code = submit_complaint(client, "菜市场门口占道经营，早上过不去车。")
    judged = Counter()
    for _round in range(10):
        for _ in range(4):
            judged[lookup(client, stranger, WRONG).status_code] += 1
        assert lookup(client, own, own_code).status_code == 200
    assert judged == {404: 5, 429: 35}


def test_a_neighbour_behind_the_same_address_is_not_locked_out(client: Any) -> None:
    stranger, _code = submit_complaint(client, "物业长期不清理楼道杂物，存在消防隐患。")
    neighbour, neighbour_code = submit_complaint(client, "公交站台的顶棚漏雨，候车的人都淋湿了。")
    guesser, neighbour_browser = client, client.application.test_client()
    statuses = [lookup(guesser, stranger, WRONG).status_code for _ in range(8)]
    assert statuses == [404] * 5 + [429] * 3
    # Same address, another number: the neighbour's typos and right code are their own.
    assert lookup(neighbour_browser, neighbour, WRONG).status_code == 404
    assert lookup(neighbour_browser, neighbour, neighbour_code).status_code == 200


def test_the_citizen_is_warned_before_the_lock_and_told_until_when(client: Any) -> None:
    number, code = submit_complaint(client, "学校门口早上接送孩子的车辆乱停，交通拥堵。")
    pages = [lookup(client, number, WRONG).get_data(as_text=True) for _ in range(5)]
    messages = [" ".join(flashes(p)) for p in pages]
    assert "还可尝试" not in messages[0]
    assert "还可尝试3次" in messages[1]
    assert "还可尝试2次" in messages[2]
    assert "还可尝试1次" in messages[3]
    assert "最后一次" in messages[4]
    locked = lookup(client, number, code)
    assert locked.status_code == 429
    message = " ".join(flashes(locked.get_data(as_text=True)))
    assert re.search(r"请于\d\d:\d\d之后再试", message), message
    assert "12345" in message, "the lock names the hotline"


def test_a_right_code_never_clears_earlier_failures(client: Any) -> None:
    number, code = submit_complaint(client, "小区电梯经常停运，老人上下楼不方便。")
    assert [lookup(client, number, WRONG).status_code for _ in range(4)] == [404] * 4
    assert lookup(client, number, code).status_code == 200
    # The right code did not count, nor did it wipe the four wrong ones.
    assert lookup(client, number, WRONG).status_code == 404
    assert lookup(client, number, code).status_code == 429


def test_guessing_one_number_from_many_addresses_is_limited(app: Any, client: Any) -> None:
    number, code = submit_complaint(client, "街道垃圾站异味很大，夏天尤其严重。")
    guesser = app.test_client()
    statuses = [lookup(guesser, number, WRONG, ip=f"198.51.100.{i}").status_code for i in range(20)]
    assert statuses.count(404) == 10 and statuses.count(429) == 10
    # The number is protected from every browser that has not shown it holds the number
    # (a new phone, say), even with the right code; it is told how to get the progress.
    refused = lookup(app.test_client(), number, code, ip="203.0.113.77")
    assert refused.status_code == 429
    message = " ".join(flashes(refused.get_data(as_text=True)))
    assert "12345" in message and "热线可告知办理进度" in message


def test_one_address_enumerating_many_numbers_is_limited(client: Any) -> None:
    own, own_code = submit_complaint(client, "路口红绿灯时间太短，老人过马路来不及。")
    answers = [lookup(client, f"MS-2026-{900000 + i}", WRONG) for i in range(40)]
    statuses = [r.status_code for r in answers]
    assert statuses.count(404) == 30 and statuses.count(429) == 10
    # Warned before, in terms of the network rather than of one number.
    assert "您所在网络还可错误查询3次" in " ".join(flashes(answers[26].get_data(as_text=True)))
    assert "您所在网络" in " ".join(flashes(answers[30].get_data(as_text=True)))
    # The same household from another address still gets through, and so would anyone else.
    assert lookup(client, own, own_code, ip="203.0.113.5").status_code == 200


def test_ipv6_addresses_of_one_network_count_as_one_client(client: Any) -> None:
    number, _code = submit_complaint(client, "施工工地夜间噪音扰民，影响休息。")
    statuses = [
        lookup(client, number, WRONG, ip=f"2001:db8:1:2::{i:x}").status_code for i in range(1, 9)
    ]
    assert statuses == [404] * 5 + [429] * 3


def test_full_width_and_lower_case_numbers_count_as_the_same_number(client: Any) -> None:
    number, _code = submit_complaint(client, "河道里有人倾倒建筑垃圾，水都发臭了。")
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in number)  # ＭＳ－２０２６－…
    spellings = [number, number.lower(), f" {number} ", full_width, number, number]
    statuses = [lookup(client, s, WRONG).status_code for s in spellings]
    assert statuses == [404] * 5 + [429]


# -- sign-in -----------------------------------------------------------------------------


def test_spraying_many_usernames_from_one_address_is_limited(app: Any) -> None:
    guesser = app.test_client()
    statuses = [sign_in(guesser, f"staff{i:02d}", "Spring2026!").status_code for i in range(40)]
    assert statuses.count(401) == 30 and statuses.count(429) == 10
    # Another address, e.g. the office itself, still signs in.
    other = sign_in(app.test_client(), "admin", password_of("admin"), ip="198.51.100.20")
    assert other.status_code == 302


def test_a_right_password_does_not_clear_earlier_failures(app: Any) -> None:
    client = app.test_client()
    assert [sign_in(client, "admin", "nope").status_code for _ in range(9)] == [401] * 9
    assert sign_in(client, "admin", password_of("admin")).status_code == 302
    other = app.test_client()
    assert sign_in(other, "admin", "nope").status_code == 401
    assert sign_in(other, "admin", password_of("admin")).status_code == 429


def test_guessing_one_account_from_many_addresses_stops_guessers_not_its_owner(
    tmp_path: Any, db_url: str
) -> None:
    from tests.conftest import make_settings
    from web import create_app

    app = create_app(
        make_settings(tmp_path, db_url, sign_in={"account_max_failures": 8}), TESTING=True
    )
    owner = app.test_client()
    first = sign_in(owner, "admin", password_of("admin"), ip="192.0.2.50")
    assert first.status_code == 302
    device = next(
        h for h in first.headers.getlist("Set-Cookie") if h.startswith("minsheng_device=")
    )
    assert "HttpOnly" in device and "Path=/login" in device

    # A guesser with a new address for every guess (a botnet, or rotating proxies).
    statuses = [
        sign_in(app.test_client(), "admin", f"guess-{i}-2026", ip=f"198.51.100.{i}").status_code
        for i in range(12)
    ]
    assert statuses == [401] * 8 + [429] * 4
    # A browser that never signed in as admin waits, even with the right password ...
    stranger = sign_in(app.test_client(), "admin", password_of("admin"), ip="203.0.113.9")
    assert stranger.status_code == 429
    assert "曾用该用户名登录过的浏览器不受影响" in " ".join(
        flashes(stranger.get_data(as_text=True))
    )
    forged = app.test_client()
    forged.set_cookie("minsheng_device", "abc.0123456789abcdef0123456789abcdef", path="/login")
    assert sign_in(forged, "admin", password_of("admin"), ip="203.0.113.9").status_code == 429
    # ... while the owner's browser signs in, even from another network.
    assert sign_in(owner, "admin", password_of("admin"), ip="203.0.113.10").status_code == 302
    # The owner's own typos are judged (and counted per address), not refused.
    assert sign_in(owner, "admin", "still-guessing-1", ip="203.0.113.10").status_code == 401
    app.extensions["minsheng"].engine.dispose()


def test_failed_sign_in_takes_as_long_whether_the_user_exists_or_not(
    tmp_path: Any, db_url: str, monkeypatch: Any
) -> None:
    """With config.toml's padding (the suite's other tests run without) and password hashes
    of production cost (the template's staff and the suite's dummy have cheaper ones)."""
    import web.auth
    from tests.conftest import base_config, make_settings
    from web import create_app
    from web.auth import hash_password

    monkeypatch.setattr(web.auth, "_DUMMY_HASH", hash_password("not-a-real-password"))
    padding = base_config()["sign_in"]["failed_answer_seconds"]
    assert padding >= 0.3
    app = create_app(
        make_settings(tmp_path, db_url, sign_in={"failed_answer_seconds": padding}),
        TESTING=True,
    )
    runtime = app.extensions["minsheng"]
    with runtime.sessions() as s, s.begin():
        s.execute(update(User).where(User.username == "safety").values(active=False))
        s.execute(
            update(User)
            .where(User.username.in_(["admin", "safety"]))
            .values(password_hash=hash_password(password_of("admin")))
        )
        assert s.scalar(select(User.id).where(User.username == "admin"))
    client = app.test_client()
    timings: dict[str, list[float]] = {"existing": [], "unknown": [], "inactive": []}
    names = {"existing": "admin", "unknown": "no-such-user", "inactive": "safety"}
    for _ in range(7):
        for kind, username in names.items():
            started = time.perf_counter()
            r = sign_in(client, username, "wrong-password-123")
            timings[kind].append(time.perf_counter() - started)
            assert r.status_code == 401
            assert "用户名或密码错误" in " ".join(flashes(r.get_data(as_text=True)))
    medians = {kind: statistics.median(t) for kind, t in timings.items()}
    assert abs(medians["existing"] - medians["unknown"]) < 0.03, medians
    assert abs(medians["existing"] - medians["inactive"]) < 0.03, medians
    assert min(medians.values()) >= padding, medians
    runtime.engine.dispose()


def test_a_wrong_lookup_takes_as_long_whether_the_number_exists_or_not(
    tmp_path: Any, db_url: str
) -> None:
    """With config.toml's padding, which the suite's other tests run without."""
    from tests.conftest import base_config, make_settings
    from web import create_app

    padding = base_config()["tracking"]["failed_answer_seconds"]
    assert padding >= 0.2
    app = create_app(
        make_settings(tmp_path, db_url, tracking={"failed_answer_seconds": padding}),
        TESTING=True,
    )
    client = app.test_client()
    number, _code = submit_complaint(client, "小区门口的井盖松动，踩上去会翻。")
    timings: dict[str, list[float]] = {"existing": [], "unknown": []}
    numbers = {"existing": number, "unknown": "MS-2026-999999"}
    for i in range(4):
        for kind, guess in numbers.items():
            started = time.perf_counter()
            r = lookup(client, guess, WRONG, ip=f"198.51.100.{i}")
            timings[kind].append(time.perf_counter() - started)
            assert r.status_code == 404
    medians = {kind: statistics.median(t) for kind, t in timings.items()}
    assert abs(medians["existing"] - medians["unknown"]) < 0.03, medians
    assert min(medians.values()) >= padding, medians
    app.extensions["minsheng"].engine.dispose()


# -- all at once, against a real threaded server ------------------------------------------


@contextmanager
def served(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join()


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _browsers(base: str, page: str, n: int) -> list[tuple[OpenerDirector, str]]:
    """n browsers with a cookie jar each and the CSRF token of `page`."""
    result = []
    for _ in range(n):
        opener = build_opener(HTTPCookieProcessor(CookieJar()), _NoRedirect())
        with opener.open(f"{base}{page}", timeout=60) as r:
            result.append((opener, csrf_from(r.read().decode())))
    return result


def _all_at_once(
    base: str, path: str, browsers: list[tuple[OpenerDirector, str]], form: dict[str, str]
) -> Counter[int]:
    start = threading.Barrier(len(browsers))
    statuses: Counter[int] = Counter()
    lock = threading.Lock()

    def post(opener: OpenerDirector, token: str) -> None:
        body = urlencode({"csrf_token": token, **form}).encode()
        start.wait()
        try:
            with opener.open(f"{base}{path}", data=body, timeout=120) as r:
                status = r.status
        except HTTPError as e:
            status = e.code
        with lock:
            statuses[status] += 1

    threads = [threading.Thread(target=post, args=b) for b in browsers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_forty_simultaneous_wrong_codes_get_at_most_five_judged(app: Any, client: Any) -> None:
    number, code = submit_complaint(client, "小区地下车库积水严重，车辆无法进出。")
    wrong = {"tracking_number": number, "query_code": WRONG}
    with served(app) as base:
        browsers = _browsers(base, "/track", 41)
        burst = _all_at_once(base, "/track", browsers[:40], wrong)
        # All at once, some may be refused that would have fitted; none beyond the limit.
        assert set(burst) <= {404, 429} and burst[404] <= 5, burst
        after = [_all_at_once(base, "/track", browsers[40:], wrong) for _ in range(6)]
        judged = burst[404] + sum(c[404] for c in after)
        assert judged == 5, (burst, after)
        right = _all_at_once(base, "/track", browsers[40:], {**wrong, "query_code": code})
        assert right == Counter({429: 1})


def test_forty_simultaneous_wrong_passwords_get_at_most_ten_judged(app: Any) -> None:
    wrong = {"username": "admin", "password": "guess-123456"}
    with served(app) as base:
        browsers = _browsers(base, "/login", 41)
        burst = _all_at_once(base, "/login", browsers[:40], wrong)
        assert set(burst) <= {401, 429} and burst[401] <= 10, burst
        after = [_all_at_once(base, "/login", browsers[40:], wrong) for _ in range(11)]
        assert burst[401] + sum(c[401] for c in after) == 10, (burst, after)
