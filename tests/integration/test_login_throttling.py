"""Login throttling per (user name, client address) and per address, over HTTP, the web form and the CLI.

The finding it answers: five wrong passwords used to lock a name for everyone, so anybody could keep the admin
out with five requests per quarter hour. Now a name is locked only from the address that failed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from conftest import PASSWORD
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from controlplane.app import create_app
from controlplane.config import Settings

TOKEN = "/api/v1/auth/token"
WRONG = "not-the-password-1"
ATTACKER = "203.0.113.66"
ADMIN_DESK = "198.51.100.10"
PROXY = "10.0.0.1"


def _at(client: TestClient, address: str) -> TestClient:
    """Another client of the same app, connecting from `address` (the socket peer the server sees)."""
    return TestClient(client.app, client=(address, 50000))


def _login(client: TestClient, username: str, password: str, **headers: str) -> Any:
    return client.post(TOKEN, json={"username": username, "password": password}, headers=headers)


def _refused(response: Any, *, field: str | None = "username") -> int:
    """A 429 with the uniform error body and a Retry-After; the seconds to wait."""
    assert response.status_code == 429, response.text
    body = response.json()
    assert set(body) == {"code", "message", "field"}
    assert body["code"] == "too_many_attempts" and body["field"] == field
    assert "try again in" in body["message"]
    assert "access_token" not in response.text
    return int(response.headers["retry-after"])


def _audit(client: TestClient, admin: dict[str, str], **params: str) -> list[dict[str, Any]]:
    response = client.get("/api/v1/audit", headers=admin, params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def admin(client: TestClient, make_user: Callable[..., str]) -> dict[str, str]:
    """The admin, logged in from their own desk."""
    make_user("root", "admin")
    response = _login(_at(client, ADMIN_DESK), "root", PASSWORD)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def test_an_attacker_elsewhere_never_locks_the_admin_out(client, admin):
    attacker, desk = _at(client, ATTACKER), _at(client, ADMIN_DESK)
    for _ in range(5):
        assert _login(attacker, "root", WRONG).status_code == 401
    # Locked from the attacker's address, for the right password too, before it is even checked ...
    assert _refused(_login(attacker, "root", PASSWORD)) == 60
    # ... while the admin's own desk logs in at once, and again, as often as they like.
    for _ in range(3):
        response = _login(desk, "root", PASSWORD)
        assert response.status_code == 200, response.text
        me = desk.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {response.json()['access_token']}"})
        assert me.json()["username"] == "root"
    _refused(_login(attacker, "root", PASSWORD))


def test_delays_grow_with_repeated_failures_and_waiting_attempts_do_not_extend_them(client, make_user, clock):
    make_user("frank", "operator")
    attacker = _at(client, ATTACKER)
    for _ in range(5):
        assert _login(attacker, "frank", WRONG).status_code == 401
    waits = [_refused(_login(attacker, "frank", WRONG))]
    for _ in range(3):
        clock.advance(timedelta(seconds=waits[-1]))
        assert _login(attacker, "frank", WRONG).status_code == 401  # the lock has passed: one more guess
        waits.append(_refused(_login(attacker, "frank", WRONG)))
    assert waits == [60, 120, 240, 480]
    # Knocking while locked changes nothing: the wait only runs down.
    clock.advance(timedelta(seconds=80))
    assert _refused(_login(attacker, "frank", PASSWORD)) == 400
    clock.advance(timedelta(seconds=400))
    assert _login(attacker, "frank", PASSWORD).status_code == 200


def test_a_right_password_forgets_that_addresss_failures(client, make_user):
    make_user("frank", "operator")
    desk = _at(client, ADMIN_DESK)
    for _ in range(3):
        for _ in range(4):
            assert _login(desk, "frank", WRONG).status_code == 401
        assert _login(desk, "frank", PASSWORD).status_code == 200


def test_failures_are_forgotten_one_per_hour(client, make_user, clock):
    make_user("frank", "operator")
    desk = _at(client, ADMIN_DESK)
    for _ in range(4):
        assert _login(desk, "frank", WRONG).status_code == 401
    clock.advance(timedelta(hours=2, minutes=1))  # two of the four are forgotten
    for _ in range(3):
        assert _login(desk, "frank", WRONG).status_code == 401
    _refused(_login(desk, "frank", PASSWORD))


def test_an_address_failing_across_many_names_is_throttled_as_a_whole(client, admin, make_user):
    make_user("kim", "secretariat")
    attacker = _at(client, ATTACKER)
    for n in range(20):
        assert _login(attacker, f"guess{n}", WRONG).status_code == 401
    # A name never tried from there is refused too: the address is locked, whoever it asks for.
    response = _login(attacker, "kim", PASSWORD)
    assert _refused(response, field=None) == 60
    assert "this address" in response.json()["message"]
    assert _login(_at(client, ADMIN_DESK), "kim", PASSWORD).status_code == 200
    locks = [e for e in _audit(client, admin, entity_type="client_address") if e["action"] == "login_locked"]
    assert [(e["entity_id"], e["actor"], e["after"]["failures"]) for e in locks] == [(ATTACKER, "login-throttle", 20)]


def test_locks_and_unlocks_are_audited_and_an_admin_unlocks_over_the_api(client, admin, login):
    operator = login("olga", "operator")
    attacker = _at(client, ATTACKER)
    for _ in range(5):
        _login(attacker, "olga", WRONG)
    _refused(_login(attacker, "olga", PASSWORD))

    assert client.post("/api/v1/users/olga/unlock", headers=operator).status_code == 403
    missing = client.post("/api/v1/users/nobody/unlock", headers=admin)
    assert missing.status_code == 404 and missing.json()["field"] == "username"
    unlocked = client.post("/api/v1/users/olga/unlock", headers=admin)
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json() == {"username": "olga", "cleared": 1, "were_locked": 1}
    assert _login(attacker, "olga", PASSWORD).status_code == 200

    entries = _audit(client, admin, entity_type="user")
    failed = [e for e in entries if e["action"] == "login_failed"]
    assert [(e["entity_id"], e["after"]) for e in failed] == [("olga", {"address": ATTACKER})] * 5
    (lock,) = [e for e in entries if e["action"] == "login_locked"]
    assert (lock["entity_id"], lock["actor"]) == ("olga", "login-throttle")
    assert lock["after"]["address"] == ATTACKER and lock["after"]["failures"] == 5
    assert lock["after"]["locked_until"].startswith("2014-07-01T03:01:00")
    (unlock,) = [e for e in entries if e["action"] == "login_unlocked"]
    assert (unlock["entity_id"], unlock["actor"], unlock["after"]) == ("olga", "root", {"cleared": 1,
                                                                                         "were_locked": 1})


def test_an_admin_unlocks_from_the_command_line(client, admin, make_user, settings, monkeypatch, clock):
    make_user("frank", "operator")
    attacker = _at(client, ATTACKER)
    for _ in range(5):
        _login(attacker, "frank", WRONG)
    _refused(_login(attacker, "frank", PASSWORD))
    monkeypatch.setenv("CP_ENV", "test")
    monkeypatch.setenv("CP_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("CP_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("controlplane.clikit.Clock", lambda: clock)  # the command's time is the test's
    from controlplane.cli import app

    result = CliRunner().invoke(app, ["users", "unlock", "frank"])
    assert result.exit_code == 0, result.output
    assert "unlocked 'frank'" in result.output and "1 of them locked" in result.output
    assert _login(attacker, "frank", PASSWORD).status_code == 200
    (unlock,) = [e for e in _audit(client, admin, entity_type="user") if e["action"] == "login_unlocked"]
    assert unlock["actor"].startswith("cli:") and unlock["after"] == {"cleared": 1, "were_locked": 1}

    unknown = CliRunner().invoke(app, ["users", "unlock", "nobody"])
    assert unknown.exit_code == 2
    assert "unknown user 'nobody'" in unknown.output


def test_the_throttle_holds_across_api_processes(client, make_user, settings, clock):
    make_user("frank", "operator")
    for _ in range(5):
        _login(_at(client, ATTACKER), "frank", WRONG)
    with TestClient(create_app(settings, clock=clock), client=(ATTACKER, 50001)) as other_process:
        _refused(_login(other_process, "frank", PASSWORD))


@pytest.fixture
def behind_proxy(settings: Settings, clock: Any, client: TestClient) -> Iterator[Callable[[str], TestClient]]:
    """Clients of an app that believes X-Forwarded-For from the proxy at 10.0.0.1 only."""
    proxied = Settings(env="test", database_url=settings.database_url, data_dir=settings.data_dir,
                       metrics_refresh_seconds=3600, trusted_proxy_header="X-Forwarded-For",
                       trusted_proxies=f"{PROXY}/32")
    with TestClient(create_app(proxied, clock=clock)) as app_client:
        yield lambda peer: _at(app_client, peer)


def test_a_trusted_proxys_header_names_the_client(behind_proxy, make_user, client):
    make_user("frank", "operator")
    proxy = behind_proxy(PROXY)
    for _ in range(5):
        # The client's own claim (left) is ignored; the hop the proxy appended is the client.
        assert _login(proxy, "frank", WRONG, **{"X-Forwarded-For": f"1.2.3.4, {ATTACKER}"}).status_code == 401
    _refused(_login(proxy, "frank", PASSWORD, **{"X-Forwarded-For": ATTACKER}))
    # Another client through the same proxy is not the attacker.
    assert _login(proxy, "frank", PASSWORD, **{"X-Forwarded-For": ADMIN_DESK}).status_code == 200


def test_a_forwarded_header_from_anyone_but_the_proxy_is_ignored(behind_proxy, make_user, client, login):
    make_user("frank", "operator")
    direct = behind_proxy(ATTACKER)
    for n in range(5):
        # A new spoofed address every time: it changes nothing, the socket peer is the client.
        assert _login(direct, "frank", WRONG, **{"X-Forwarded-For": f"192.0.2.{n}"}).status_code == 401
    _refused(_login(direct, "frank", PASSWORD, **{"X-Forwarded-For": "192.0.2.200"}))
    admin = login("root", "admin")
    failed = [e for e in _audit(client, admin, entity_type="user") if e["action"] == "login_failed"]
    assert {e["after"]["address"] for e in failed} == {ATTACKER}


def test_the_web_login_form_is_throttled_alike(client, make_user):
    make_user("lee", "operator")
    attacker, desk = _at(client, ATTACKER), _at(client, ADMIN_DESK)
    for _ in range(5):
        response = attacker.post("/login", data={"username": "lee", "password": WRONG}, follow_redirects=False)
        assert response.status_code == 401
    refused = attacker.post("/login", data={"username": "lee", "password": PASSWORD}, follow_redirects=False)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "60"
    assert "cp_token" not in refused.headers.get("set-cookie", "")
    # The form and the API share one throttle.
    _refused(_login(attacker, "lee", PASSWORD))
    ok = desk.post("/login", data={"username": "lee", "password": PASSWORD}, follow_redirects=False)
    assert ok.status_code == 303 and re.search(r"cp_token=cpt_", ok.headers["set-cookie"])
