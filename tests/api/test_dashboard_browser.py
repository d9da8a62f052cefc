"""``/dashboard`` in a real headless Chromium, against a real ``ogcache serve``.

The server runs as the README starts it (``serve --demo``: SQLite, demo data) with Redis as the
cache, so the page has a breaker, an L1 tier and memory figures to show, and an admin token.
Chromium is the system's (Debian's ``chromium`` package), driven by Playwright through
``executable_path``: ``playwright install`` is never needed. Without Chromium the test is
skipped with the command that installs it.

``OGCACHE_UPDATE_SCREENSHOT=1`` also writes the screenshot to docs/dashboard.png.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import unique_prefix
from tests.support.servers import free_port, wait_for_port

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "dashboard.png"
UPDATE_SCREENSHOT = os.environ.get("OGCACHE_UPDATE_SCREENSHOT") == "1"
ADMIN_TOKEN = "admin-token-of-the-dashboard-test-0123456789abcdef"
INSTALL_CHROMIUM = "apt-get install -y chromium"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/lib/chromium/chromium", "/snap/bin/chromium")
# Generous: a busy 2-core machine runs this beside the rest of the suite.
WAIT_MS = 60_000


def find_chromium() -> str | None:
    """``OGCACHE_TEST_CHROMIUM``, else a Chromium or Chrome on the PATH or where Debian puts it."""
    configured = os.environ.get("OGCACHE_TEST_CHROMIUM")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return next((path for path in CHROMIUM_PATHS if os.access(path, os.X_OK)), None)


NO_CHROMIUM = (
    "no Chromium on this machine for the dashboard's browser test: install it with "
    f"`{INSTALL_CHROMIUM}` (Debian/Ubuntu, as root), or point OGCACHE_TEST_CHROMIUM at a "
    "Chromium or Chrome binary"
)


@pytest.fixture(scope="module")
def chromium() -> str:
    path = find_chromium()
    if path is None:
        pytest.skip(NO_CHROMIUM)
    return path


def test_without_chromium_the_skip_names_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(f"{__name__}.CHROMIUM_PATHS", (str(tmp_path / "chromium"),))
    monkeypatch.delenv("OGCACHE_TEST_CHROMIUM", raising=False)
    assert find_chromium() is None
    monkeypatch.setenv("OGCACHE_TEST_CHROMIUM", str(tmp_path / "missing"))
    assert find_chromium() is None
    assert "`apt-get install -y chromium`" in NO_CHROMIUM


@dataclass
class Server:
    base: str
    prefix: str

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(f"{self.base}{path}", headers=headers, timeout=30)

    def wait_until_healthy(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while self.get("/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the server did not become healthy"
            time.sleep(0.2)

    def read_menu(self, times: int) -> None:
        for _ in range(times):
            assert self.get("/api/menu").status_code == 200

    def keys(self) -> int:
        """The key count, fresh."""
        return int(self.get("/api/cache", ADMIN_TOKEN).json()["stats"]["totalKeys"])

    def loads(self) -> int:
        """Loads of every namespace, fresh (the admin's view)."""
        namespaces = self.get("/api/cache", ADMIN_TOKEN).json()["stats"]["namespaces"]
        return sum(int(stats["loads"]) for stats in namespaces.values())


@pytest.fixture
def server(tmp_path: Path, redis_url: str) -> Iterator[Server]:
    port = free_port()
    prefix = unique_prefix()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OGCACHE_")}
    environment.update(
        OGCACHE_DATABASE_URL=f"sqlite:///{tmp_path / 'dashboard.db'}",
        OGCACHE_REDIS_URL=redis_url,
        OGCACHE_CACHE_PREFIX=prefix,
        OGCACHE_ADMIN_TOKEN=ADMIN_TOKEN,
        OGCACHE_REFRESH_INTERVAL="0",  # warm once at start: loads change only when we act
        OGCACHE_VERIFY_SAMPLE="1",  # every hit verified: the verifier's figures move
        OGCACHE_VERIFY_DELAY="0.5",
        OGCACHE_LOG_LEVEL="WARNING",
    )
    command = [str(Path(sys.executable).parent / "ogcache"), "serve", "--demo"]
    with (tmp_path / "serve.log").open("w") as log:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            cwd=tmp_path,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_for_port("127.0.0.1", port, timeout=60)
        running = Server(f"http://127.0.0.1:{port}", prefix)
        running.wait_until_healthy()
        yield running
        clear = httpx.post(
            f"{running.base}/api/cache",
            json={"action": "clear"},
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        assert clear.status_code == 200, clear.text
    finally:
        process.terminate()
        process.wait(timeout=30)


@dataclass
class Watch:
    """What the browser reported: console errors, page errors, failed requests, statuses."""

    errors: list[str] = field(default_factory=list)
    statuses: list[tuple[str, str, int]] = field(default_factory=list)

    def attach(self, page: Any) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"page error: {error}"))
        page.on(
            "requestfailed",
            lambda request: self.errors.append(f"failed: {request.url} {request.failure}"),
        )
        page.on(
            "response",
            lambda response: self.statuses.append(
                (response.request.method, response.url, response.status)
            ),
        )

    def _console(self, message: Any) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} at {message.location}")


def points(page: Any, chart: str) -> int:
    return int(page.get_attribute(f"#chart-{chart}", "data-points") or 0)


def wait_for_chart_data(page: Any, server: Server) -> None:
    """Reads between polls until the hits/s chart has drawn more than one point."""
    deadline = time.monotonic() + WAIT_MS / 1000
    while points(page, "hits") <= 1:
        assert time.monotonic() < deadline, f"no chart data: {points(page, 'hits')} points"
        server.read_menu(3)
        page.wait_for_timeout(500)


def use_token(page: Any, token: str) -> None:
    if token:
        page.fill("#token", token)
        page.click("#token-save")
    else:
        page.click("#token-forget")


def click(page: Any, button: str) -> tuple[str, str]:
    """Click an admin button; the outcome the page shows (ok, refused, error) and its text."""
    page.evaluate("document.getElementById('action-result').dataset.outcome = ''")
    page.click(f"#{button}")
    page.wait_for_selector(
        "#action-result:is([data-outcome=ok], [data-outcome=refused], [data-outcome=error])",
        timeout=WAIT_MS,
    )
    result = page.locator("#action-result")
    return result.get_attribute("data-outcome") or "", result.text_content() or ""


def test_the_dashboard_shows_the_running_service_and_runs_admin_actions(
    chromium: str, server: Server, tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    server.read_menu(10)
    watch = Watch()
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(WAIT_MS)
            watch.attach(page)
            page.goto(f"{server.base}/dashboard", wait_until="load")
            check_the_figures(page, server)
            check_the_admin_actions(page, server)
            if UPDATE_SCREENSHOT:
                show_for_the_screenshot(page, server)
            shoot(page, tmp_path)
        finally:
            browser.close()
    expected = [s for s in watch.statuses if s[2] >= 400]
    assert [(method, status) for method, _, status in expected] == [("POST", 403), ("POST", 401)]
    unexpected = [e for e in watch.errors if not ("status of 403" in e or "status of 401" in e)]
    assert unexpected == [], unexpected
    assert len(watch.errors) <= 2, watch.errors  # at most Chromium's line for each refusal


def check_the_figures(page: Any, server: Server) -> None:
    row = page.wait_for_selector('#namespaces tbody tr[data-namespace="menu"]')
    assert row is not None
    assert (row.query_selector("td") or row).text_content() == "menu"
    wait_for_chart_data(page, server)
    assert points(page, "hit-rate") > 1
    assert points(page, "p99") > 1
    assert points(page, "keys") > 1
    assert page.text_content("#availability") == "available"
    assert page.text_content("#circuit") == "closed"
    assert page.text_content("#changes") == "local"  # SQLite: each process polls the outbox
    assert "verified" in (page.text_content("#verifier-detail") or "")
    # The canvas really has ink on it, not only the attribute.
    inked = page.evaluate(
        """() => { const c = document.getElementById('chart-hits');
        const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
        let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert inked > 1000


def check_the_admin_actions(page: Any, server: Server) -> None:
    use_token(page, ADMIN_TOKEN)
    assert ADMIN_TOKEN not in page.url
    stored = page.evaluate("sessionStorage.getItem('ogcache.dashboard.adminToken')")
    assert stored == ADMIN_TOKEN
    before = server.loads()
    outcome, text = click(page, "warmup")
    assert outcome == "ok", text
    assert text.startswith("warmup: 6 keys warmed ("), text
    assert server.loads() >= before + 6  # the server reloaded what the page asked for

    keys = server.keys()
    page.fill("#prefix", "menu:")
    outcome, text = click(page, "clear-prefix")
    assert outcome == "ok", text
    assert re.fullmatch(r'clear-prefix "menu:": [1-9]\d* keys removed', text), text
    assert server.keys() < keys

    use_token(page, "not-the-admin-token-but-long-enough-0123456789")
    outcome, text = click(page, "warmup")
    assert outcome == "refused", text
    assert text.startswith("warmup refused (403): "), text
    assert "admin token" in text

    use_token(page, "")
    outcome, text = click(page, "warmup")
    assert outcome == "refused", text
    assert text.startswith("warmup refused (401): "), text
    after = server.loads()
    page.wait_for_timeout(1000)
    assert server.loads() == after  # nothing ran for the refused clicks


def show_for_the_screenshot(page: Any, server: Server) -> None:
    """Traffic over 40 s (reads, a clear in the middle) so the charts have a shape, then the
    admin's view after a warm-up. Only when the screenshot in docs/ is rewritten."""
    use_token(page, ADMIN_TOKEN)
    for second in range(40):
        server.read_menu(2 + second % 7)
        if second == 20:
            page.fill("#prefix", "menu:")
            click(page, "clear-prefix")
        page.wait_for_timeout(1000)
    click(page, "warmup")
    page.wait_for_timeout(2500)  # one more poll after it


def shoot(page: Any, directory: Path) -> None:
    path = directory / "dashboard.png"
    page.screenshot(path=str(path), full_page=True)
    size = path.stat().st_size
    assert size < 200_000, f"screenshot is {size} bytes"
    if UPDATE_SCREENSHOT:
        shutil.copyfile(path, SCREENSHOT)
