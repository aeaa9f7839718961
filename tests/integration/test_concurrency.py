"""Production shape under load: gunicorn with 4 workers on PostgreSQL, 100 citizens submitting
the public form at the same moment. Every submission must become exactly one case, with
tracking numbers that are distinct and consecutive; a form sent again makes no new case.

Runs only with MINSHENG_TEST_DB=postgresql: SQLite serialises every writer anyway.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import tomllib
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.parse import urlencode, urljoin
from urllib.request import (
    HTTPCookieProcessor,
    HTTPRedirectHandler,
    OpenerDirector,
    build_opener,
    urlopen,
)

import pytest
from sqlalchemy import create_engine, select

from tests.conftest import DB_KIND, ROOT, base_config, csrf_from, need
from triage.models import Case

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        DB_KIND != "postgresql",
        reason="needs MINSHENG_TEST_DB=postgresql: concurrent workers on SQLite prove nothing",
    ),
]

# The server runs at most WORKERS requests at once, so more citizens only add rounds of the
# same 4-way contention: 100 give 25 of them (a tracking number read, then written, instead
# of taken in one UPDATE, was handed out twice in every run).
CITIZENS = 100
WORKERS = 4
TOKEN = re.compile(r'name="token"[^>]*value="([^"]+)"')
RECEIPT = re.compile(r"/receipt/(MS-\d{4}-\d{6})$")


# -- a config file for the gunicorn processes ---------------------------------------------


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON string escapes are valid TOML
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):  # a table inside a table ([intake.calls] mappings): inline
        items = (
            f"{json.dumps(k, ensure_ascii=False)} = {_toml_value(v)}" for k, v in value.items()
        )
        return "{" + ", ".join(items) + "}"
    raise TypeError(f"no TOML for {value!r}")


def dump_toml(raw: dict[str, Any]) -> str:
    """Enough TOML for config.toml: tables of scalars and lists, and arrays of tables."""
    lines: list[str] = []
    for name, section in raw.items():
        items = section if isinstance(section, list) else [section]
        for item in items:
            lines.append(f"[[{name}]]" if isinstance(section, list) else f"[{name}]")
            lines += [f"{key} = {_toml_value(value)}" for key, value in item.items()]
            lines.append("")
    text = "\n".join(lines)
    assert tomllib.loads(text) == raw, "config did not survive the round trip"
    return text


# -- gunicorn ----------------------------------------------------------------------------


@pytest.fixture
def gunicorn(settings: Any, tmp_path: Path) -> Any:
    """`gunicorn -w 4 'web:create_app()'` reading its config from MINSHENG_CONFIG, on the test
    database; yields the base URL and stops the server gracefully afterwards."""
    binary = Path(sys.executable).with_name("gunicorn")
    need(binary.exists(), f"{binary} missing (pip install -e '.[test]')")
    raw = base_config()
    raw["app"] = {**raw["app"], "instance_dir": str(tmp_path / "instance"), "secret_key": ""}
    raw["database"] = {"url": settings.database.url}
    raw["classifier"] = {**raw["classifier"], "model_dir": str(tmp_path / "instance" / "models")}
    config = tmp_path / "config.toml"
    config.write_text(dump_toml(raw), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "MINSHENG_DATABASE_URL"}
    # Every worker must sign sessions with the same key: a form fetched from one worker is
    # posted to another.
    env.update(MINSHENG_CONFIG=str(config), MINSHENG_SECRET_KEY=uuid.uuid4().hex)
    # gunicorn 25+ opens a control socket at ~/.gunicorn/gunicorn.ctl, shared by every run on
    # the machine; older versions ignore this setting.
    conf = tmp_path / "gunicorn.conf.py"
    # The config file runs in the master before it forks the workers: a throwaway app there
    # imports every module the app needs once (some 3.5 s of CPU), not once per worker. Each
    # worker still builds its own app from MINSHENG_CONFIG, as in production (no --preload:
    # what a worker makes for itself, such as its signing key, stays its own).
    conf.write_text(
        "control_socket_disable = True\n"
        "import web\n"
        "web.create_app().extensions['minsheng'].engine.dispose()\n",
        encoding="utf-8",
    )
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "-c",
                str(conf),
                "-w",
                str(WORKERS),
                "-b",
                "127.0.0.1:0",
                "--graceful-timeout",
                "10",
                "web:create_app()",
            ],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        text = ""
        while time.monotonic() < deadline:
            text = log.read_text(errors="replace")
            if proc.poll() is not None:
                pytest.fail(f"gunicorn exited with {proc.returncode}:\n{text}")
            port = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", text)
            if port and text.count("Booting worker") >= WORKERS:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"gunicorn did not start within 60 s:\n{text}")
        base = f"http://127.0.0.1:{port.group(1)}"
        _wait_until_serving(base, deadline)
        yield base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    text = log.read_text(errors="replace")
    assert proc.returncode == 0, f"gunicorn exited with {proc.returncode}:\n{text}"
    assert "Traceback" not in text, text


def _wait_until_serving(base: str, deadline: float) -> None:
    """Until a worker has loaded the app and answers (the others may still be loading)."""
    while True:
        try:
            with urlopen(f"{base}/complain", timeout=5) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            pytest.fail("gunicorn does not answer")
        time.sleep(0.1)


# -- one citizen -------------------------------------------------------------------------


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


@dataclass
class Citizen:
    """A browser of its own: a cookie jar, and the form it was given."""

    base: str
    opener: OpenerDirector
    form: dict[str, str]

    @classmethod
    def open_form(cls, base: str, i: int) -> Citizen:
        opener = build_opener(HTTPCookieProcessor(CookieJar()), _NoRedirect())
        with opener.open(f"{base}/complain", timeout=60) as r:
            page = r.read().decode()
        form = {
            "csrf_token": csrf_from(page),
            "token": TOKEN.search(page).group(1),
            "kind": "complaint",
            "subject": f"并发测试 {i}",
            "body": f"第{i}位市民：小区楼道灯坏了一个月，物业不修。({uuid.uuid4().hex})",
            "name": f"市民{i}",
            "phone": "13812345678",
            "email": "",
        }
        return cls(base, opener, form)

    def submit(self) -> tuple[int, str]:
        """POSTs the form; returns (status, Location)."""
        data = urlencode(self.form).encode()
        try:
            with self.opener.open(f"{self.base}/complain", data=data, timeout=60) as r:
                return r.status, ""
        except HTTPError as e:
            return e.code, e.headers.get("Location", "")

    def receipt(self, location: str) -> str:
        with self.opener.open(urljoin(self.base, location), timeout=60) as r:
            return r.read().decode()


def _web_cases(url: str) -> list[tuple[str, str]]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return [
                (row.tracking_number, row.external_id)
                for row in conn.execute(
                    select(Case.tracking_number, Case.external_id).where(Case.channel == "web")
                )
            ]
    finally:
        engine.dispose()


def test_100_concurrent_submissions_on_4_workers(gunicorn: str, settings: Any) -> None:
    started = time.monotonic()
    released: list[float] = []
    barrier = threading.Barrier(CITIZENS, action=lambda: released.append(time.monotonic()))

    def one(i: int) -> tuple[Citizen, int, str, str, float]:
        try:
            citizen = Citizen.open_form(gunicorn, i)
        except BaseException:
            barrier.abort()
            raise
        barrier.wait(timeout=60)
        status, location = citizen.submit()
        answered = time.monotonic()
        page = citizen.receipt(location) if status == 302 else ""
        return citizen, status, location, page, answered

    with ThreadPoolExecutor(max_workers=CITIZENS) as pool:
        results = list(pool.map(one, range(CITIZENS)))
    forms = released[0] - started
    burst = max(r[4] for r in results) - released[0]

    statuses = [r[1] for r in results]
    assert statuses == [302] * CITIZENS, {s: statuses.count(s) for s in set(statuses)}
    numbers = [RECEIPT.search(location).group(1) for _, _, location, _, _ in results]
    assert len(set(numbers)) == CITIZENS, "two submissions were given the same number"
    for (_, _, _, page, _), number in zip(results, numbers, strict=True):
        # The receipt is served by any worker: they share the secret key.
        assert f'id="tracking-number">{number}<' in page

    cases = _web_cases(settings.database_url)
    assert len(cases) == CITIZENS, f"{len(cases)} cases for {CITIZENS} submissions"
    by_token = {external_id: number for number, external_id in cases}
    for (citizen, *_), number in zip(results, numbers, strict=True):
        assert by_token[f"form:{citizen.form['token']}"] == number
    years = {n.split("-")[1] for n, _ in cases}
    serials = sorted(int(n.rsplit("-", 1)[1]) for n, _ in cases)
    assert len(years) == 1
    assert serials == list(range(serials[0], serials[0] + CITIZENS)), "gaps or duplicates"

    # The same form sent again, and a fresh form sent 8 times at once (a double-click on
    # a slow connection): no new case for the first, exactly one for the second.
    first, _, location, _, _ = results[0]
    assert first.submit() == (302, location)
    double = Citizen.open_form(gunicorn, CITIZENS)
    again = threading.Barrier(8)

    def send(_: int) -> tuple[int, str]:
        again.wait(timeout=30)
        return double.submit()

    with ThreadPoolExecutor(max_workers=8) as pool:
        answers = set(pool.map(send, range(8)))
    assert len(answers) == 1, answers
    cases = _web_cases(settings.database_url)
    assert len(cases) == CITIZENS + 1
    serials = sorted(int(n.rsplit("-", 1)[1]) for n, _ in cases)
    assert serials == list(range(serials[0], serials[0] + CITIZENS + 1))

    print(
        f"\n{CITIZENS} concurrent submissions on {WORKERS} gunicorn workers: "
        f"{forms:.2f} s to fetch the forms (while the workers load the app), "
        f"{burst:.2f} s from the simultaneous POSTs until the last was answered, "
        f"{time.monotonic() - started:.2f} s in all"
    )
