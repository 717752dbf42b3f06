"""A real browser follows the VC rooms live: a room goes down on the server (the probes' write, as a probe cycle
makes it) and then out of service, and the open rooms page shows each change in the room's row and in the counts
without reloading. On a phone the rooms page stays within the screen (the table scrolls inside its own box).

The server is the project's CLI (`controlplane serve`, uvicorn) in a subprocess on 127.0.0.1 with its own SQLite
data dir, the seed catalogue synced into it; no durable engine (so no probe cycle of its own: the test makes the
changes). The browser is Debian's Chromium driven by Playwright.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from components import missing
from servers import free_port, server_env, stop_process, wait_healthy
from sqlalchemy.orm import Session, sessionmaker

from controlplane.auth import service as auth_service
from controlplane.auth.roles import Role
from controlplane.auth.schemas import UserCreate
from controlplane.clock import Clock
from controlplane.config import Settings
from controlplane.db import make_engine, make_sessionmaker, transaction
from controlplane.migrations import upgrade
from controlplane.rooms import service
from controlplane.rooms.domain import probe_outcome
from controlplane.web.i18n import format_local

pytestmark = pytest.mark.e2e

CHROMIUM = Path(os.environ.get("CP_TEST_CHROMIUM", "/usr/lib/chromium/chromium"))
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
PASSWORD = "e2e-password-1234"
ROOM = "seoul-1-100"  # a room of the seed catalogue
ROOMS = 273


@dataclass(frozen=True)
class Server:
    base_url: str
    sessions: sessionmaker[Session]
    username: str


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The seed catalogue and an operator written straight into the server's database (what `controlplane db upgrade`,
    `seed`, `rooms sync` and `users create` do, without four more processes), then the server."""
    if not CHROMIUM.exists():
        missing("chromium", f"Chromium is not at {CHROMIUM}")
    data_dir = tmp_path_factory.mktemp("e2e-rooms")
    url = f"sqlite:///{data_dir / 'controlplane.db'}"
    upgrade(url)
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    clock = Clock()
    with transaction(sessions) as s:
        auth_service.seed_agencies(s, clock=clock, actor="e2e")
        catalogue, digest = service.read_files(s, settings=Settings(env="dev", data_dir=data_dir, database_url=url))
        service.apply_sync(s, clock=clock, actor="e2e", catalogue=catalogue, digest=digest)
        auth_service.create_user(s, clock=clock, actor="e2e", data=UserCreate(
            username="e2e-operator", password=PASSWORD, role=Role.OPERATOR))

    port = free_port()
    log = data_dir / "server.log"
    env = server_env(data_dir, env="dev", database_url=url, workflows="false", metrics_refresh_seconds="60")
    with log.open("wb") as log_handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "controlplane", "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=data_dir, env=env, stdout=log_handle, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(base_url, process, log)
        yield Server(base_url=base_url, sessions=sessions, username="e2e-operator")
    finally:
        stop_process(process)
        engine.dispose()


@pytest.fixture(scope="module")
def browser(server: Server) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def _log_in(page: Any, server: Server) -> None:
    page.goto(f"{server.base_url}/vc/rooms")
    assert "/login?next=%2Fvc%2Frooms" in page.url  # not logged in: the form, remembering where it was going
    page.get_by_label("아이디").fill(server.username)
    page.get_by_label("비밀번호").fill(PASSWORD)
    page.get_by_role("button", name="로그인").click()
    page.wait_for_url(f"{server.base_url}/vc/rooms")


def _count(page: Any, state: str) -> int:
    return int(page.locator(f'#room-counts [data-count="{state}"]').inner_text())


def test_a_room_going_down_shows_on_the_open_page_without_a_reload(browser: Any, server: Server) -> None:
    from playwright.sync_api import expect

    context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="ko-KR")
    page = context.new_page()
    try:
        _log_in(page, server)
        row = page.locator(f'#rooms tr[data-room="{ROOM}"]')
        badge = row.locator('[data-col="state"] .badge')
        assert row.get_attribute("data-state") == "unknown" and badge.inner_text() == "미확인"
        assert _count(page, "total") == ROOMS and _count(page, "unknown") == ROOMS and _count(page, "down") == 0
        # Connected: the note says the page is live. A mark left on this document must survive what follows.
        page.locator("#live-note").wait_for(state="visible")
        page.evaluate("window.__vcMark = 'still here'")

        # The probes find the room down (the write a probe cycle makes, in the server's database).
        with transaction(server.sessions) as s:
            changes = service.record_probes(s, clock=Clock(), outcomes={
                ROOM: probe_outcome(False, None, None, "timeout")})
        assert changes == [(ROOM, "unknown", "down")]
        expect(row).to_have_attribute("data-state", "down", timeout=10_000)
        assert badge.inner_text() == "장애" and "state-down" in (badge.get_attribute("class") or "").split()
        assert _count(page, "down") == 1 and _count(page, "unknown") == ROOMS - 1 and _count(page, "total") == ROOMS
        assert "changed" in (row.get_attribute("class") or "").split()
        with transaction(server.sessions) as s:
            since = service.get_room(s, code=ROOM).state_since
        assert row.locator('[data-col="since"]').inner_text() == format_local(since, "Asia/Seoul")  # as the server

        # An operator takes it out of service elsewhere: the row and the counts follow again.
        with transaction(server.sessions) as s:
            service.set_service(s, clock=Clock(), actor="e2e", code=ROOM, reason="codec replaced")
        expect(row).to_have_attribute("data-state", "out_of_service", timeout=10_000)
        assert badge.inner_text() == "운영 중지" and "state-out_of_service" in (badge.get_attribute("class") or "")
        assert _count(page, "down") == 0 and _count(page, "out_of_service") == 1

        # The same document all along: the mark is there and the browser navigated once.
        assert page.evaluate("window.__vcMark") == "still here"
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        assert page.url == f"{server.base_url}/vc/rooms"

        # The room's page (server-rendered) agrees.
        page.locator(f'#rooms tr[data-room="{ROOM}"] th a').click()
        page.wait_for_url(f"{server.base_url}/vc/rooms/{ROOM}")
        assert page.locator("#out-reason").inner_text() == "codec replaced"
    finally:
        context.close()


def test_on_a_phone_the_rooms_page_fits_the_screen(browser: Any, server: Server) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 740}, locale="ko-KR", is_mobile=True,
                                  has_touch=True)
    page = context.new_page()
    try:
        _log_in(page, server)
        # The page itself never scrolls sideways: the table scrolls inside its box, the counts wrap.
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        wrap = page.locator(".table-wrap").first
        assert wrap.evaluate("(el) => el.scrollWidth > el.clientWidth && getComputedStyle(el).overflowX === 'auto'")
        # The room's name and state are in the first screen width.
        first = page.locator("#rooms tbody tr").first
        state = first.locator('[data-col="state"] .badge').bounding_box()
        assert state is not None and state["x"] + state["width"] <= 375
        counts = page.locator("#room-counts").bounding_box()
        assert counts is not None and counts["width"] <= 375
    finally:
        context.close()
