"""A real browser logs in through the form and reads the dashboard of a real server.

The server is the project's CLI in a subprocess with its own SQLite data dir; the browser is Debian's Chromium
driven by Playwright (never `playwright install`).
"""


from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from components import missing
from servers import free_port, server_env

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("CP_TEST_CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
E2E_PASSWORD = "e2e-password-1234"
SERVER_START_SECONDS = 60
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Meetings from controlplane/compliance/data/designated_meetings.yaml, all designated from 2011 or 2014
# with no end, with the mode of the session the test imports for each.
SESSIONS = [
    ("LG-VICE-HEAD", "MOIS", "video"),
    ("LG-PLAN-DIR", "MOIS", "video"),
    ("CDSCH", "MOIS", "in_person"),
    ("SAFETY-POLICY-COORD", "MOIS", "hybrid"),
    ("ECON-MIN", "MOEF", "in_person"),
    ("EXT-ECON-MIN", "MOEF", "video"),
    ("PRICE-VICE-MIN", "MOEF", "in_person"),
    ("CAB-WEEKLY", "OPM", "video"),
    ("VICE-MIN-WEEKLY", "OPM", "in_person"),
    ("RND-BUDGET-COORD", "MSIT", "video"),
]


@dataclass(frozen=True)
class Server:
    base_url: str
    username: str
    password: str
    admin: str
    data_dir: Path
    log: Path


def _env(data_dir: Path) -> dict[str, str]:
    return server_env(data_dir, env="dev", metrics_refresh_seconds="5")


def _cli(data_dir: Path, *args: str, stdin: str | None = None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "controlplane", *args], cwd=data_dir, env=_env(data_dir), input=stdin,
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, (
        f"controlplane {' '.join(args)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


def _session_days(count: int) -> list[date]:
    """`count` days of this year (Seoul), none after today: what the server's clock accepts as held."""
    today = datetime.now(ZoneInfo("Asia/Seoul")).date()
    start = date(today.year, 1, 1)
    span = max(0, (today - start).days - 1)
    return [start + timedelta(days=span * k // max(1, count - 1)) for k in range(count)]


def _write_sessions(path: Path) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["meeting_code", "held_on", "mode", "status", "note"])
        for (code, _host, mode), day in zip(SESSIONS, _session_days(len(SESSIONS)), strict=True):
            writer.writerow([code, day.isoformat(), mode, "held", "e2e"])


def _wait_healthy(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            with urllib.request.urlopen(f"{base_url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not answer /healthz within {SERVER_START_SECONDS}s:\n"
                f"{log.read_text(errors='replace')}")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("e2e-server")
    _cli(data_dir, "db", "upgrade")
    _cli(data_dir, "seed")
    _cli(data_dir, "users", "create", "--username", "mois-user", "--role", "ministry", "--agency", "MOIS",
         "--password-stdin", stdin=E2E_PASSWORD + "\n")
    _cli(data_dir, "users", "create", "--username", "e2e-admin", "--role", "admin", "--password-stdin",
         stdin=E2E_PASSWORD + "\n")
    sessions_file = data_dir / "sessions.csv"
    _write_sessions(sessions_file)
    _cli(data_dir, "compliance", "import", str(sessions_file))

    port = free_port()
    log = data_dir / "server.log"
    with log.open("wb") as log_handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=data_dir, env=_env(data_dir), stdout=log_handle, stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(base_url, process, log)
        yield Server(base_url=base_url, username="mois-user", password=E2E_PASSWORD, admin="e2e-admin",
                     data_dir=data_dir, log=log)
    finally:
        _stop(process)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        missing("chromium", f"Chromium is not at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def percent(share: float | None) -> str:
    """The dashboard's format: one decimal and a percent sign ('–' when nothing was held)."""
    return "–" if share is None else f"{share * 100:.1f}%"


def _open_data(base_url: str, period: str) -> dict[str, Any]:
    url = f"{base_url}/api/v1/open-data/remote-meetings?period={period}"
    with urllib.request.urlopen(url, timeout=10) as response:
        data: dict[str, Any] = json.load(response)
    return data


def test_login_and_read_the_dashboard_chart(browser: Any, server: Server, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ko-KR")
    page = context.new_page()
    try:
        page.goto(f"{server.base_url}/dashboard")
        # Not logged in: the page sends the browser to the login form, remembering where it was going.
        assert "/login?next=%2Fdashboard" in page.url
        page.get_by_label("아이디").fill(server.username)
        page.get_by_label("비밀번호").fill(server.password)
        page.get_by_role("button", name="로그인").click()
        page.wait_for_url(f"{server.base_url}/dashboard")

        period = page.locator("#period").input_value()
        assert period == str(datetime.now(ZoneInfo("Asia/Seoul")).year)
        report = _open_data(server.base_url, period)
        assert report["government"]["held"] >= 1, report

        chart = page.locator("svg#share-chart")
        chart.wait_for(state="visible")
        assert chart.is_visible()
        bars = chart.locator("rect.bar")
        assert bars.count() == len(report["rows"]) > 0
        assert [bars.nth(i).get_attribute("data-agency") for i in range(bars.count())] == [
            row["key"] for row in report["rows"]]
        target = chart.locator("line.target-line")
        assert target.count() == 1
        # A vertical line has no width, so Playwright never calls it "visible": check that it spans the bars.
        line_box, chart_box = target.bounding_box(), chart.bounding_box()
        assert line_box is not None and chart_box is not None
        assert line_box["height"] > 0.5 * chart_box["height"]
        assert chart_box["x"] < line_box["x"] < chart_box["x"] + chart_box["width"]
        # Bars of ministries with sessions are drawn with a width; the others have none.
        mois = chart.locator('rect.bar[data-agency="MOIS"]')
        assert mois.is_visible()
        assert float(mois.get_attribute("width") or 0) > 0

        assert page.locator("#government-share").inner_text().strip() == percent(report["government"]["share"])

        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
        content = shot.read_bytes()
        assert len(content) > 1000 and content.startswith(PNG_MAGIC)
    finally:
        context.close()


def test_on_a_phone_the_menu_folds_and_badges_stay_whole(browser: Any, server: Server, tmp_path: Path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="ko-KR", is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    try:
        page.goto(f"{server.base_url}/login?next=/ministries")
        page.get_by_label("아이디").fill(server.admin)
        page.get_by_label("비밀번호").fill(server.password)
        page.get_by_role("button", name="로그인").click()
        page.wait_for_url(f"{server.base_url}/ministries")

        # The menu is folded: the page's heading is on the first screen, the toggle opens and closes the menu.
        menu, toggle = page.locator("#main-menu"), page.locator("label[for=nav-toggle]")
        assert toggle.is_visible() and not menu.is_visible()
        heading = page.locator("main h1").bounding_box()
        assert heading is not None and heading["y"] + heading["height"] < 740
        toggle.click()
        assert menu.is_visible() and page.get_by_role("link", name="감사 로그").is_visible()
        toggle.click()
        assert not menu.is_visible()

        # Status badges keep their words on one line, however narrow their column.
        badges = page.locator("table .badge")
        assert badges.count() > 0
        for index in range(badges.count()):
            badge = badges.nth(index)
            lines = badge.evaluate("(el) => el.getClientRects().length")
            box = badge.bounding_box()
            size = float(badge.evaluate("(el) => parseFloat(getComputedStyle(el).fontSize)"))
            assert lines == 1 and box is not None and box["height"] < 2 * size, badge.inner_text()
        page.screenshot(path=str(tmp_path / "phone.png"), full_page=False)
    finally:
        context.close()
