"""Files and rows agree after a crash: a server killed with SIGKILL in the middle of a burst
of submissions with attachments leaves no row without its file, and `minsheng attachments
sweep` removes the files that lost their case."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from http.client import HTTPException
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.error import HTTPError, URLError
from urllib.request import HTTPCookieProcessor, HTTPRedirectHandler, Request, build_opener

from click.testing import CliRunner
from sqlalchemy import create_engine, select

from intake.submission import Attachment as Upload
from intake.submission import Channel, Submission
from tests.conftest import ROOT, csrf_from
from tests.mailserver import free_port
from triage.cases import register
from triage.models import Attachment
from web.cli import main

PNG_HEAD = b"\x89PNG\r\n\x1a\n"


class _NoRedirect(HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _multipart(fields: dict[str, str], files: list[tuple[str, str, bytes]]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
        parts.append(f"{head}{value}\r\n".encode())
    for name, filename, data in files:
        parts.append(
            (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                f'filename="{filename}"\r\nContent-Type: image/png\r\n\r\n'
            ).encode()
            + data
            + b"\r\n"
        )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _submit(base: str, i: int) -> int:
    opener = build_opener(HTTPCookieProcessor(CookieJar()), _NoRedirect())
    with opener.open(f"{base}/complain", timeout=30) as r:
        page = r.read().decode()
    fields = {
        "csrf_token": csrf_from(page),
        "token": re.search(r'name="token"[^>]*value="([^"]+)"', page).group(1),
        "kind": "complaint",
        "subject": f"路灯不亮 {i}",
        "body": f"明德路{i}号门口的路灯坏了三个星期，晚上很黑。",
    }
    files = [("attachments", f"p{i}-{k}.png", PNG_HEAD + os.urandom(2048)) for k in range(3)]
    body, content_type = _multipart(fields, files)
    request = Request(f"{base}/complain", data=body, headers={"Content-Type": content_type})
    try:
        with opener.open(request, timeout=30) as r:
            return r.status
    except HTTPError as e:
        return e.code


def _rows_and_files(db_url: str, root: Path) -> tuple[set[str], set[str]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = set(conn.scalars(select(Attachment.sha256)))
    finally:
        engine.dispose()
    files = {p.name for p in root.glob("??/??/*") if p.is_file()}
    return rows, files


def _sweep(config_file: Path, *extra: str) -> dict[str, Any]:
    result = CliRunner().invoke(
        main, ["attachments", "sweep", "--config", str(config_file), "--json", *extra]
    )
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


def test_sigkill_during_a_burst_loses_no_file_and_the_sweep_removes_orphans(
    config_file: Path, db_url: str, tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = (tmp_path / "serve.log").open("wb")
    binary = Path(sys.executable).with_name("minsheng")
    proc = subprocess.Popen(
        [str(binary), "serve", "--config", str(config_file), "--port", str(port)],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                build_opener().open(f"{base}/complain", timeout=2).close()
                break
            except (URLError, OSError):
                assert proc.poll() is None, (tmp_path / "serve.log").read_text()
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)

        accepted: list[int] = []
        stop = threading.Event()

        def citizen(k: int) -> None:
            i = 0
            while not stop.is_set():
                try:
                    if _submit(base, k * 1000 + i) == 302:
                        accepted.append(1)
                except (URLError, OSError, AttributeError, HTTPException):
                    return  # the server is gone
                i += 1

        threads = [threading.Thread(target=citizen, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        while len(accepted) < 8 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        stop.set()
        for t in threads:
            t.join(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()

    root = tmp_path / "inst" / "attachments"
    rows, files = _rows_and_files(db_url, root)
    assert len(accepted) >= 8 and rows
    assert rows <= files, "a committed attachment has no file"
    swept = _sweep(config_file, "--grace-minutes", "0")
    print(f"accepted {len(accepted)}, rows {len(rows)}, files {len(files)}, swept {swept}")
    rows_after, files_after = _rows_and_files(db_url, root)
    assert rows_after == rows and files_after == rows
    assert not list(root.glob("??/??/.incoming-*"))


def test_the_sweep_removes_only_old_files_without_a_case(
    runtime: Any, config_file: Path, db_url: str, tmp_path: Path
) -> None:
    def submission(n: int) -> Submission:
        return Submission(
            channel=Channel.WEB,
            external_id=f"form:crash-{n}",
            received_at=datetime.now(UTC),
            subject="路灯不亮",
            body="明德路的路灯坏了三个星期",
            attachments=(Upload(f"{n}.png", "image/png", PNG_HEAD + bytes([n]) * 64),),
        )

    # The sweep command reads the same instance folder as the runtime of this test.
    store_root = tmp_path / "inst" / "attachments"
    runtime.attachments.root = store_root
    policy = runtime.intake_policy()
    with runtime.sessions() as s:
        register(s, submission(1), policy, datetime.now(UTC))
        s.commit()
    with runtime.sessions() as s:
        register(s, submission(2), policy, datetime.now(UTC))
        s.rollback()  # the process died before the commit: a file without its case
    rows, files = _rows_and_files(db_url, store_root)
    assert len(rows) == 1 and len(files) == 2

    young = _sweep(config_file)  # default grace: an hour
    assert young["orphans"] == 0 and _rows_and_files(db_url, store_root)[1] == files
    dry = _sweep(config_file, "--grace-minutes", "0", "--dry-run")
    assert dry["orphans"] == 1 and _rows_and_files(db_url, store_root)[1] == files
    done = _sweep(config_file, "--grace-minutes", "0")
    assert done == {"kept": 1, "orphans": 1, "partial": 0, "dry_run": False}
    assert _rows_and_files(db_url, store_root) == (rows, rows)
    # The folders of removed files go too; those of kept files stay.
    assert len([p for p in store_root.glob("??/??") if p.is_dir()]) == 1
