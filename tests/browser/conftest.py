"""Fixtures for tests in a real browser: headless Debian Chromium driven by Playwright, and the
app served over HTTP from a thread.

Chromium is launched by hand rather than through pytest-playwright's fixtures so that a missing
browser or Playwright is a skip on a developer's machine and a failure in CI (`need()`).
"""

from __future__ import annotations

import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import make_settings, need

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _has_chinese_font() -> bool:
    if not shutil.which("fc-list"):
        return False
    out = subprocess.run(["fc-list", ":lang=zh"], capture_output=True, text=True, check=False)
    return bool(out.stdout.strip())


@pytest.fixture(scope="session")
def chromium() -> Iterator[Any]:
    """One headless Chromium for the whole run; each test opens its own contexts."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        need(False, "playwright is not installed (pip install -e '.[test]')")
    need(Path(CHROMIUM).exists(), f"{CHROMIUM} missing (apt-get install chromium)")
    need(_has_chinese_font(), "no Chinese font (apt-get install fonts-wqy-microhei)")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Any:
    """Every case waits in the triage queue (no automatic routing), and no model deployed in
    the working tree's instance folder leaks in: the keyword rules make the suggestion."""
    return make_settings(
        tmp_path,
        db_url,
        classifier={"auto_route": False, "model_dir": str(tmp_path / "instance" / "models")},
    )


@pytest.fixture
def live_server(app: Any) -> Iterator[str]:
    """The app on a free loopback port, served by a thread; yields the base URL."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join(timeout=10)
    server.server_close()
