"""Identity over HTTP: login (JSON and OAuth2 form), tokens, API keys, users and agencies."""

from __future__ import annotations

from datetime import timedelta

import pytest
from conftest import PASSWORD, error_body
from fastapi.testclient import TestClient

from controlplane.auth import service
from controlplane.auth.schemas import AgencyCreate, AgencyKind
from controlplane.db import transaction

TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"
KEYS = "/api/v1/auth/api-keys"
USERS = "/api/v1/users"
AGENCIES = "/api/v1/agencies"
STRONG = "Another-strong-pass-42"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def ministries(client, sessions, clock):
    with transaction(sessions) as s:
        for code in ("MOIS", "MOEF"):
            service.create_agency(s, clock=clock, actor="test", data=AgencyCreate(
                code=code, name_ko=f"{code} 부", name_en=f"{code} ministry", kind=AgencyKind.MINISTRY))


# --- login --------------------------------------------------------------------------------------

def test_login_with_json_gives_a_working_bearer_token(client, make_user):
    make_user("alice", "operator")
    response = client.post(TOKEN, json={"username": "alice", "password": PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["access_token"].startswith("cpt_")
    me = client.get(ME, headers=_bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "alice"
    assert me.json()["role"] == "operator"
    assert me.json()["agency_code"] is None
    assert "compliance:read" in me.json()["permissions"]
    assert "sessions:write" not in me.json()["permissions"]


def test_login_with_oauth2_password_form(client, make_user):
    make_user("bob", "auditor")
    response = client.post(TOKEN, data={"grant_type": "password", "username": "bob", "password": PASSWORD})
    assert response.status_code == 200, response.text
    me = client.get(ME, headers=_bearer(response.json()["access_token"]))
    assert me.status_code == 200
    assert me.json()["role"] == "auditor"
    assert "audit:read" in me.json()["permissions"]


@pytest.mark.parametrize("username,password", [("carol", "wrong-password-123"), ("nobody", PASSWORD)])
def test_wrong_credentials_give_401_with_the_uniform_body(client, make_user, username, password):
    make_user("carol", "operator")
    response = client.post(TOKEN, json={"username": username, "password": password})
    body = error_body(response, 401, code="not_authenticated")
    assert body["field"] is None
    assert "access_token" not in body
    assert response.headers.get("www-authenticate") == "Bearer"


def test_repeated_failed_logins_lock_the_name_from_that_address_for_a_while(client, make_user, login, clock):
    make_user("frank", "operator")
    for _ in range(5):
        error_body(client.post(TOKEN, json={"username": "frank", "password": "not-the-password-1"}), 401)
    # Locked from this address: even the right password is refused, with its own code and when to come back.
    response = client.post(TOKEN, json={"username": "frank", "password": PASSWORD})
    locked = error_body(response, 429, field="username", code="too_many_attempts")
    assert "try again in 60 seconds" in locked["message"]
    assert response.headers["retry-after"] == "60"
    # Another address is not locked (tests/integration/test_login_throttling.py has the whole story).
    elsewhere = TestClient(client.app, client=("198.51.100.10", 50000))
    assert elsewhere.post(TOKEN, json={"username": "frank", "password": PASSWORD}).status_code == 200
    clock.advance(timedelta(minutes=1))
    assert client.post(TOKEN, json={"username": "frank", "password": PASSWORD}).status_code == 200

    admin = login("root", "admin")
    failures = client.get("/api/v1/audit?entity_type=user&limit=1000", headers=admin).json()
    assert [e["entity_id"] for e in failures if e["action"] == "login_failed"] == ["frank"] * 5
    assert all(e["actor"] == "anonymous" for e in failures if e["action"] == "login_failed")


def test_login_without_password_names_the_field(client, make_user):
    make_user("dave", "operator")
    error_body(client.post(TOKEN, json={"username": "dave"}), 422, field="password")
    error_body(client.post(TOKEN, data={"username": "dave"}), 422, field="password")


def test_me_requires_a_token(client):
    error_body(client.get(ME), 401, code="not_authenticated")
    error_body(client.get(ME, headers=_bearer("cpt_not-a-real-token")), 401)
    error_body(client.get(ME, headers={"Authorization": "Basic YWxpY2U6cGFzcw=="}), 401)


def test_logout_revokes_the_token(client, login):
    headers = login("erin", "operator")
    assert client.get(ME, headers=headers).status_code == 200
    assert client.post("/api/v1/auth/logout", headers=headers).status_code == 204
    error_body(client.get(ME, headers=headers), 401)
    # Another login still works: logging out revokes only that token.
    fresh = client.post(TOKEN, json={"username": "erin", "password": PASSWORD}).json()["access_token"]
    assert client.get(ME, headers=_bearer(fresh)).status_code == 200


def test_token_expires_after_its_ttl(client, login, clock, settings):
    headers = login("frank", "operator")
    clock.advance(timedelta(minutes=settings.token_ttl_minutes - 1))
    assert client.get(ME, headers=headers).status_code == 200
    clock.advance(timedelta(minutes=2))
    error_body(client.get(ME, headers=headers), 401, code="not_authenticated")


# --- API keys -----------------------------------------------------------------------------------

def test_api_key_is_shown_once_and_works_as_bearer_and_x_api_key(client, login):
    headers = login("grace", "operator")
    created = client.post(KEYS, headers=headers, json={"name": "nightly report"})
    assert created.status_code == 201, created.text
    raw = created.json()["key"]
    assert raw.startswith("cpk_")
    assert raw.startswith(created.json()["prefix"]) and len(created.json()["prefix"]) < len(raw)

    listed = client.get(KEYS, headers=headers)
    assert listed.status_code == 200
    assert [k["name"] for k in listed.json()] == ["nightly report"]
    assert raw not in listed.text
    for item in listed.json():
        assert "key" not in item and "key_hash" not in item
    assert "hash" not in listed.text

    as_bearer = client.get(ME, headers=_bearer(raw))
    assert as_bearer.status_code == 200 and as_bearer.json()["username"] == "grace"
    as_header = client.get(ME, headers={"X-API-Key": raw})
    assert as_header.status_code == 200 and as_header.json()["username"] == "grace"
    assert client.get(KEYS, headers=headers).json()[0]["last_used_at"] is not None


def test_revoked_api_key_is_refused(client, login):
    headers = login("heidi", "operator")
    created = client.post(KEYS, headers=headers, json={"name": "ci"}).json()
    assert client.delete(f"{KEYS}/{created['id']}", headers=headers).status_code == 204
    error_body(client.get(ME, headers=_bearer(created["key"])), 401)
    error_body(client.get(ME, headers={"X-API-Key": created["key"]}), 401)
    assert client.get(KEYS, headers=headers).json()[0]["revoked_at"] is not None


def test_api_key_of_another_user_cannot_be_revoked(client, login):
    owner = login("ivan", "operator")
    other = login("judy", "operator")
    created = client.post(KEYS, headers=owner, json={"name": "mine"}).json()
    error_body(client.delete(f"{KEYS}/{created['id']}", headers=other), 404)
    assert client.get(ME, headers=_bearer(created["key"])).status_code == 200


def test_expiring_api_key_stops_working(client, login, clock):
    headers = login("karl", "operator")
    raw = client.post(KEYS, headers=headers, json={"name": "short", "expires_in_days": 1}).json()["key"]
    assert client.get(ME, headers=_bearer(raw)).status_code == 200
    clock.advance(timedelta(days=1, seconds=1))
    error_body(client.get(ME, headers=_bearer(raw)), 401)


# --- users --------------------------------------------------------------------------------------

def test_admin_creates_a_ministry_user_who_can_log_in(client, login, ministries):
    admin = login("root", "admin")
    response = client.post(USERS, headers=admin, json={
        "username": "mois.clerk", "password": STRONG, "role": "ministry", "agency_code": "MOIS",
        "full_name": "Kim Min-su", "email": "clerk@mois.go.kr"})
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["username"] == "mois.clerk"
    assert body["agency_code"] == "MOIS"
    assert body["active"] is True
    token = client.post(TOKEN, json={"username": "mois.clerk", "password": STRONG})
    assert token.status_code == 200
    me = client.get(ME, headers=_bearer(token.json()["access_token"])).json()
    assert (me["role"], me["agency_code"]) == ("ministry", "MOIS")
    assert client.get(f"{USERS}/mois.clerk", headers=admin).json()["email"] == "clerk@mois.go.kr"
    assert "mois.clerk" in [u["username"] for u in client.get(USERS, headers=admin).json()]


def test_ministry_user_without_agency_is_refused(client, login):
    admin = login("root", "admin")
    response = client.post(USERS, headers=admin, json={"username": "lost", "password": STRONG, "role": "ministry"})
    error_body(response, 422, field="agency_code")
    assert client.get(f"{USERS}/lost", headers=admin).status_code == 404


def test_duplicate_user_is_a_conflict(client, login):
    admin = login("root", "admin")
    payload = {"username": "twin", "password": STRONG, "role": "operator"}
    assert client.post(USERS, headers=admin, json=payload).status_code == 201
    error_body(client.post(USERS, headers=admin, json=payload), 409, field="username", code="conflict")


@pytest.mark.parametrize("password", ["short-1", "onlyletterslongenough", "123456789012345", "x1" * 200])
def test_weak_password_is_refused_with_the_field(client, login, password):
    admin = login("root", "admin")
    response = client.post(USERS, headers=admin, json={"username": "weak", "password": password, "role": "operator"})
    body = error_body(response, 422, field="password")
    assert password not in body["message"]
    assert client.get(f"{USERS}/weak", headers=admin).status_code == 404


def test_bad_email_and_bad_role_name_the_field(client, login):
    admin = login("root", "admin")
    error_body(client.post(USERS, headers=admin, json={"username": "eve", "password": STRONG, "role": "operator",
                                                       "email": "not-an-email"}), 422, field="email")
    error_body(client.post(USERS, headers=admin, json={"username": "eve", "password": STRONG, "role": "wizard"}),
               422, field="role")


def test_deactivating_a_user_revokes_its_tokens(client, login):
    admin = login("root", "admin")
    user = login("mallory", "operator")
    assert client.get(ME, headers=user).status_code == 200
    response = client.patch(f"{USERS}/mallory", headers=admin, json={"active": False})
    assert response.status_code == 200 and response.json()["active"] is False
    error_body(client.get(ME, headers=user), 401)
    error_body(client.post(TOKEN, json={"username": "mallory", "password": PASSWORD}), 401)
    # Reactivation does not bring the old token back: it was revoked, not merely suspended.
    assert client.patch(f"{USERS}/mallory", headers=admin, json={"active": True}).status_code == 200
    error_body(client.get(ME, headers=user), 401)
    assert client.post(TOKEN, json={"username": "mallory", "password": PASSWORD}).status_code == 200


def test_password_change_revokes_tokens_and_switches_password(client, login):
    admin = login("root", "admin")
    user = login("niaj", "operator")
    assert client.patch(f"{USERS}/niaj", headers=admin, json={"password": STRONG}).status_code == 200
    error_body(client.get(ME, headers=user), 401)
    error_body(client.post(TOKEN, json={"username": "niaj", "password": PASSWORD}), 401)
    assert client.post(TOKEN, json={"username": "niaj", "password": STRONG}).status_code == 200


def test_user_update_validation(client, login, ministries):
    admin = login("root", "admin")
    login("olivia", "operator")
    # Turning a user into a ministry user needs an agency.
    error_body(client.patch(f"{USERS}/olivia", headers=admin, json={"role": "ministry"}), 422, field="agency_code")
    error_body(client.patch(f"{USERS}/olivia", headers=admin, json={"active": None}), 422, field="active")
    error_body(client.patch(f"{USERS}/olivia", headers=admin, json={"password": "short"}), 422, field="password")
    error_body(client.patch(f"{USERS}/nobody", headers=admin, json={"full_name": "X"}), 404)
    moved = client.patch(f"{USERS}/olivia", headers=admin, json={"role": "ministry", "agency_code": "MOEF"})
    assert moved.status_code == 200 and moved.json()["agency_code"] == "MOEF"
    assert client.get(f"{USERS}/olivia", headers=admin).json()["role"] == "ministry"


def test_clearing_full_name_is_a_clear_4xx_not_a_server_error(client, login):
    admin = login("root", "admin")
    login("peggy", "operator")
    response = client.patch(f"{USERS}/peggy", headers=admin, json={"full_name": None})
    # Either refused with the field, or taken as "no name" (empty string); never a 500.
    if response.status_code == 200:
        assert response.json()["full_name"] == ""
    else:
        error_body(response, 422, field="full_name")


# --- agencies -----------------------------------------------------------------------------------

def test_agencies_crud(client, login, ministries):
    admin = login("root", "admin")
    created = client.post(AGENCIES, headers=admin, json={
        "code": "KOSA", "name_ko": "우주항공청", "name_en": "Korea AeroSpace Administration", "kind": "agency",
        "parent_code": "MOIS"})
    assert created.status_code == 201, created.text
    assert created.json()["parent_code"] == "MOIS"
    error_body(client.post(AGENCIES, headers=admin, json={
        "code": "KOSA", "name_ko": "x", "name_en": "x", "kind": "agency"}), 409, field="code")
    error_body(client.post(AGENCIES, headers=admin, json={
        "code": "NEW", "name_ko": "x", "name_en": "x", "kind": "agency", "parent_code": "NOPE"}), 404,
        field="parent_code")
    error_body(client.post(AGENCIES, headers=admin, json={
        "code": "bad code", "name_ko": "x", "name_en": "x", "kind": "agency"}), 422, field="code")
    error_body(client.post(AGENCIES, headers=admin, json={
        "code": "NEW", "name_ko": "x", "name_en": "x", "kind": "planet"}), 422, field="kind")

    patched = client.patch(f"{AGENCIES}/KOSA", headers=admin, json={"name_en": "KASA"})
    assert patched.status_code == 200 and patched.json()["name_en"] == "KASA"
    assert patched.json()["name_ko"] == "우주항공청"
    got = client.get(f"{AGENCIES}/KOSA", headers=admin)
    assert got.status_code == 200 and got.json()["name_en"] == "KASA"

    error_body(client.get(f"{AGENCIES}/NOPE", headers=admin), 404, code="not_found")
    error_body(client.patch(f"{AGENCIES}/NOPE", headers=admin, json={"name_en": "x"}), 404)

    codes = [a["code"] for a in client.get(AGENCIES, headers=admin).json()]
    assert codes == sorted(codes) and {"KOSA", "MOIS", "MOEF"} <= set(codes)
    only_agencies = client.get(AGENCIES, headers=admin, params={"kind": "agency"}).json()
    assert [a["code"] for a in only_agencies] == ["KOSA"]


def test_every_role_can_read_agencies_but_only_admin_writes(client, login, ministries):
    for role in ("operator", "secretariat", "auditor"):
        headers = login(f"reader-{role}", role)
        assert client.get(AGENCIES, headers=headers).status_code == 200
        error_body(client.post(AGENCIES, headers=headers, json={
            "code": "NEW", "name_ko": "x", "name_en": "x", "kind": "agency"}), 403, code="forbidden")
    ministry = login("reader-ministry", "ministry", "MOIS")
    assert client.get(f"{AGENCIES}/MOEF", headers=ministry).status_code == 200
    error_body(client.patch(f"{AGENCIES}/MOIS", headers=ministry, json={"name_en": "x"}), 403)
