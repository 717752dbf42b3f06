"""Authentication on every route, role and agency scope, the audit trail, and what never leaves the API."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import pytest
from conftest import PASSWORD
from fastapi import routing
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from controlplane.app import create_app
from controlplane.auth.models import AuditEntry
from controlplane.db import transaction

API = "/api/v1/compliance"
PUBLIC = ("/api/v1/auth/token", "/api/v1/open-data/")
MUTATING = {"POST", "PUT", "PATCH", "DELETE"}
NEW_PASSWORD = "Brand-new-secret-77"


@pytest.fixture
def admin(client, catalogue, login):
    return login("admin1", "admin")


def _routes(app) -> list[tuple[str, set[str]]]:
    """(path template, methods) of every route, including those of included routers."""
    walk = getattr(routing, "iter_route_contexts", None)  # newer FastAPI keeps included routers nested
    found = []
    for route in (walk(app.routes) if walk else app.routes):
        path, methods = getattr(route, "path", None), getattr(route, "methods", None)
        if path and methods:
            found.append((path, set(methods)))
    return found


def _api_routes(app) -> list[tuple[str, str, str]]:
    """(method, template, concrete path) for every /api/v1 route, path parameters filled with '1'."""
    found = []
    for path, methods in _routes(app):
        if path.startswith("/api/v1"):
            concrete = re.sub(r"\{[^}]+\}", "1", path)
            for method in sorted(methods - {"HEAD", "OPTIONS"}):
                found.append((method, path, concrete))
    return found


def _is_public(path: str) -> bool:
    return path == PUBLIC[0] or path.startswith(PUBLIC[1])


def _record(client, headers, meeting, day, mode, status="held", note=""):
    response = client.post(f"{API}/sessions", headers=headers,
                           json={"meeting": meeting, "held_on": day, "mode": mode, "status": status, "note": note})
    assert response.status_code == 201, response.text
    return response.json()


def _sessions(client, headers, **params) -> list[dict]:
    response = client.get(f"{API}/sessions", headers=headers, params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["meeting_code", "held_on", "mode"])
    writer.writerows(rows)
    return out.getvalue().encode()


def _audit(client, headers, **params) -> list[dict]:
    response = client.get("/api/v1/audit", headers=headers, params={"limit": 1000, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _audit_count(sessions) -> int:
    with transaction(sessions) as s:
        return s.scalar(select(func.count()).select_from(AuditEntry)) or 0


# --- authentication on every route ------------------------------------------------------------------

def test_every_private_api_route_requires_credentials(client):
    routes = _api_routes(client.app)
    private = [r for r in routes if not _is_public(r[1])]
    # The enumeration itself must see the API: identity, agencies, users, audit and the register.
    templates = {template for _, template, _ in private}
    assert {"/api/v1/auth/me", "/api/v1/users", "/api/v1/audit", f"{API}/sessions", f"{API}/shares",
            f"{API}/sessions/import"} <= templates
    assert len(private) >= 25
    for method, template, path in private:
        for headers in ({}, {"Authorization": "Bearer cpt_forged"}, {"X-API-Key": "cpk_forged"},
                        {"Authorization": "Basic YWRtaW46YWRtaW4="}):
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, template, headers, response.text)
            assert response.json()["code"] == "not_authenticated"
            assert response.headers.get("www-authenticate") == "Bearer"


def test_only_login_and_open_data_are_public(client):
    public = {(m, t) for m, t, _ in _api_routes(client.app) if _is_public(t)}
    assert public == {("POST", "/api/v1/auth/token"), ("GET", "/api/v1/open-data/remote-meetings")}


# --- agency scope of ministry users -------------------------------------------------------------

@pytest.fixture
def mois(client, admin, login):
    return login("mois.clerk", "ministry", "MOIS")


def test_ministry_user_cannot_write_sessions_of_another_ministry(client, admin, mois):
    refused = client.post(f"{API}/sessions", headers=mois,
                          json={"meeting": "MOEF-ECON", "held_on": "2014-02-03", "mode": "video"})
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "forbidden" and refused.json()["field"] == "meeting"

    moef = _record(client, admin, "MOEF-ECON", "2014-02-03", "in_person")
    assert client.patch(f"{API}/sessions/{moef['id']}", headers=mois, json={"mode": "video"}).status_code == 403
    assert client.delete(f"{API}/sessions/{moef['id']}", headers=mois).status_code == 403
    assert [(s["id"], s["mode"]) for s in _sessions(client, admin)] == [(moef["id"], "in_person")]

    # Its own ministry's meetings are fine.
    own = _record(client, mois, "MOIS-LOCAL", "2014-02-04", "in_person")
    assert client.patch(f"{API}/sessions/{own['id']}", headers=mois, json={"mode": "video"}).status_code == 200
    assert client.delete(f"{API}/sessions/{own['id']}", headers=mois).status_code == 204


def test_ministry_user_cannot_import_another_ministrys_sessions(client, admin, mois):
    content = _csv([["MOIS-LOCAL", "2014-01-10", "video"], ["MOEF-ECON", "2014-01-11", "video"],
                    ["MOIS-SAFETY", "2014-01-12", "video"]])
    response = client.post(f"{API}/sessions/import", headers=mois, files={"file": ("s.csv", content, "text/csv")})
    assert response.status_code in (403, 422), response.text
    body = response.json()
    assert [(d["row"], d["field"]) for d in body["details"]] == [(3, "meeting_code")]
    assert "MOEF" in body["details"][0]["reason"]
    assert _sessions(client, admin) == []


def test_ministry_user_sees_only_its_own_sessions(client, admin, mois):
    _record(client, admin, "MOIS-LOCAL", "2014-01-10", "video", note="MOIS note")
    _record(client, admin, "MOIS-SAFETY", "2014-01-11", "video")
    _record(client, admin, "MOEF-ECON", "2014-01-12", "video", note="MOEF internal note")
    _record(client, admin, "MSIT-ICT", "2014-03-12", "video")
    listed = _sessions(client, mois)
    assert sorted(s["meeting"] for s in listed) == ["MOIS-LOCAL", "MOIS-SAFETY"]
    assert {s["host"] for s in listed} == {"MOIS"}
    assert _sessions(client, mois, ministry="MOEF") == []
    assert _sessions(client, mois, meeting="MOEF-ECON") == []
    assert len(_sessions(client, admin)) == 4
    # Aggregates stay readable: the shares are public anyway.
    shares = client.get(f"{API}/shares", headers=mois, params={"period": "2014"})
    assert shares.status_code == 200 and shares.json()["government"]["held"] == 4


# --- auditor and operator ------------------------------------------------------------------------

def _writes(policy_id: int, session_id: int) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("POST", "/api/v1/users", {"json": {"username": "intruder", "password": NEW_PASSWORD, "role": "admin"}}),
        ("PATCH", "/api/v1/users/admin1", {"json": {"active": False}}),
        ("POST", "/api/v1/agencies", {"json": {"code": "NEW", "name_ko": "x", "name_en": "x", "kind": "agency"}}),
        ("PATCH", "/api/v1/agencies/MOIS", {"json": {"name_en": "renamed"}}),
        ("POST", f"{API}/meetings", {"json": {"code": "MOIS-NEW", "name_ko": "x", "name_en": "x", "host": "MOIS",
                                              "cadence": "monthly", "designated_from": "2014-01-01"}}),
        ("PATCH", f"{API}/meetings/MOIS-LOCAL", {"json": {"active": False}}),
        ("POST", f"{API}/policies", {"json": {"effective_from": "2005-01-01", "effective_until": "2005-12-31",
                                              "designated_meetings": 1, "target_percent": 10}}),
        ("PATCH", f"{API}/policies/{policy_id}", {"json": {"effective_until": "2014-12-31"}}),
        ("POST", f"{API}/sessions", {"json": {"meeting": "MOIS-LOCAL", "held_on": "2014-02-01", "mode": "video"}}),
        ("PATCH", f"{API}/sessions/{session_id}", {"json": {"mode": "in_person"}}),
        ("DELETE", f"{API}/sessions/{session_id}", {}),
        ("POST", f"{API}/sessions/import",
         {"files": {"file": ("s.csv", _csv([["MOIS-SAFETY", "2014-02-01", "video"]]), "text/csv")}}),
    ]


def _state(client, admin) -> tuple:
    return (
        client.get("/api/v1/users", headers=admin).json(),
        client.get("/api/v1/agencies", headers=admin).json(),
        client.get(f"{API}/meetings", headers=admin).json(),
        client.get(f"{API}/policies", headers=admin).json(),
        _sessions(client, admin),
    )


@pytest.mark.parametrize("role", ["auditor", "operator"])
def test_read_only_roles_are_refused_every_write(client, admin, login, sessions, role):
    session_id = _record(client, admin, "MOIS-LOCAL", "2014-01-10", "video")["id"]
    policy_id = client.get(f"{API}/policies", headers=admin).json()[-1]["id"]
    headers = login(f"ro-{role}", role)
    before, audit_rows = _state(client, admin), _audit_count(sessions)
    for method, path, kwargs in _writes(policy_id, session_id):
        response = client.request(method, path, headers=headers, **kwargs)
        assert response.status_code == 403, (role, method, path, response.text)
        assert response.json()["code"] == "forbidden"
    assert _state(client, admin) == before
    assert _audit_count(sessions) == audit_rows


@pytest.mark.parametrize("role", ["auditor", "operator"])
def test_read_only_roles_are_refused_on_every_mutating_route(client, admin, login, role):
    """The auditor writes nothing; the operator writes only on the cloud (onboarding), runs jobs with its
    credentials, keeps the system inventory, runs waves of migrations and runs the VC network, nothing else. A
    migration plan is posted but never stored: a read."""
    headers = login(f"ro-{role}", role)
    operators = ("/api/v1/cloud/", "/api/v1/jobs", "/api/v1/credentials/", "/api/v1/systems/", "/api/v1/waves",
                 "/api/v1/migrations/", "/api/v1/vc/")
    reads = ("/api/v1/plans",)
    mutating = [(m, t, p) for m, t, p in _api_routes(client.app)
                if m in MUTATING and not _is_public(t) and not t.startswith("/api/v1/auth/") and t not in reads
                and not (role == "operator" and t.startswith(operators))]
    assert len(mutating) >= 10
    for method, template, path in mutating:
        response = client.request(method, path, headers=headers)
        assert response.status_code == 403, (role, method, template, response.text)


def test_auditor_reads_shares_audit_and_users(client, admin, login):
    headers = login("inspector", "auditor")
    for path, params in [(f"{API}/shares", {"period": "2014"}), ("/api/v1/audit", {}), ("/api/v1/users", {}),
                         ("/api/v1/users/admin1", {}), (f"{API}/sessions", {}), (f"{API}/meetings", {}),
                         (f"{API}/policies", {}), ("/api/v1/agencies", {}), (f"{API}/report", {"period": "2014"})]:
        response = client.get(path, headers=headers, params=params)
        assert response.status_code == 200, (path, response.text)
    assert "admin1" in [u["username"] for u in client.get("/api/v1/users", headers=headers).json()]


def test_operator_cannot_write_sessions_or_read_audit(client, admin, login):
    headers = login("ops", "operator")
    response = client.post(f"{API}/sessions", headers=headers,
                           json={"meeting": "MOIS-LOCAL", "held_on": "2014-02-01", "mode": "video"})
    assert response.status_code == 403
    assert "sessions:write" in response.json()["message"]
    assert client.get("/api/v1/audit", headers=headers).status_code == 403
    assert client.get("/api/v1/users", headers=headers).status_code == 403
    assert client.get(f"{API}/shares", headers=headers, params={"period": "2014"}).status_code == 200
    assert _sessions(client, admin) == []


# --- the audit trail ----------------------------------------------------------------------------

def _one(entries: list[dict], **match) -> dict:
    found = [e for e in entries if all(e[k] == v for k, v in match.items())]
    assert len(found) == 1, (match, entries)
    return found[0]


def test_every_mutation_leaves_an_audit_row(client, admin):
    me = client.get("/api/v1/auth/me", headers=admin).json()

    user = client.post("/api/v1/users", headers=admin,
                       json={"username": "clerk", "password": NEW_PASSWORD, "role": "ministry", "agency_code": "MOIS"})
    assert user.status_code == 201
    created = _record(client, admin, "MOIS-LOCAL", "2014-05-02", "in_person")
    client.patch(f"{API}/sessions/{created['id']}", headers=admin, json={"mode": "video"})
    client.delete(f"{API}/sessions/{created['id']}", headers=admin)
    imported = client.post(f"{API}/sessions/import", headers=admin,
                           files={"file": ("one.csv", _csv([["MOIS-SAFETY", "2014-02-01", "video"]]), "text/csv")})
    assert imported.status_code == 200
    meeting = client.post(f"{API}/meetings", headers=admin, json={
        "code": "MSIT-AI", "name_ko": "AI 협의회", "name_en": "AI council", "host": "MSIT",
        "participants": ["MOIS"], "cadence": "monthly", "designated_from": "2014-01-01"})
    assert meeting.status_code == 201
    policy = client.post(f"{API}/policies", headers=admin, json={
        "effective_from": "2005-01-01", "effective_until": "2010-12-31", "designated_meetings": 100,
        "target_percent": 20})
    assert policy.status_code == 201
    key = client.post("/api/v1/auth/api-keys", headers=admin, json={"name": "robot"})
    assert key.status_code == 201
    client.delete(f"/api/v1/auth/api-keys/{key.json()['id']}", headers=admin)
    agency = client.post("/api/v1/agencies", headers=admin,
                         json={"code": "KOSA", "name_ko": "우주항공청", "name_en": "KASA", "kind": "agency"})
    assert agency.status_code == 201
    client.patch("/api/v1/agencies/KOSA", headers=admin, json={"name_en": "Korea AeroSpace Administration"})

    entries = _audit(client, admin, actor="admin1")
    for entry in entries:
        assert entry["actor"] == "admin1" and entry["actor_user_id"] == me["id"]
        assert entry["at"].startswith("2014-07-01T03:00:00")

    login_row = _one(entries, action="login")
    assert set(login_row["after"]) == {"expires_at"}

    user_row = _one(entries, action="create", entity_type="user")
    assert user_row["entity_id"] == "clerk"
    assert user_row["after"]["role"] == "ministry" and user_row["after"]["username"] == "clerk"

    session_create = _one(entries, action="create", entity_type="session")
    assert session_create["entity_id"] == str(created["id"])
    assert session_create["after"]["mode"] == "in_person" and session_create["after"]["held_on"] == "2014-05-02"
    update = _one(entries, action="update", entity_type="session")
    assert (update["before"], update["after"]) == ({"mode": "in_person"}, {"mode": "video"})
    delete = _one(entries, action="delete", entity_type="session")
    assert delete["entity_id"] == str(created["id"])
    assert delete["before"]["mode"] == "video" and delete["after"] is None

    assert _one(entries, action="import")["after"] == {"source": "one.csv", "imported": 1}

    meeting_row = _one(entries, action="create", entity_type="meeting")
    assert meeting_row["entity_id"] == "MSIT-AI"
    assert meeting_row["after"]["code"] == "MSIT-AI" and meeting_row["after"]["participants"] == ["MOIS"]

    policy_row = _one(entries, action="create", entity_type="policy")
    assert policy_row["after"]["target_percent"] == 20 and policy_row["after"]["effective_from"] == "2005-01-01"

    key_row = _one(entries, action="create", entity_type="api_key")
    assert key_row["after"]["name"] == "robot"
    assert _one(entries, action="revoke", entity_type="api_key")["after"]["revoked_at"] is not None
    assert key.json()["key"] not in str(entries)

    assert _one(entries, action="create", entity_type="agency")["entity_id"] == "KOSA"
    agency_update = _one(entries, action="update", entity_type="agency")
    assert (agency_update["before"], agency_update["after"]) == (
        {"name_en": "KASA"}, {"name_en": "Korea AeroSpace Administration"})

    # Filters work and the newest entry comes first.
    assert {e["entity_type"] for e in _audit(client, admin, entity_type="meeting")} == {"meeting"}
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True)


def test_logout_and_user_update_are_audited(client, admin, login):
    clerk = login("clerk", "operator")
    assert client.post("/api/v1/auth/logout", headers=clerk).status_code == 204
    client.patch("/api/v1/users/clerk", headers=admin, json={"full_name": "Lee Ji-eun", "active": False})
    logout = _one(_audit(client, admin, actor="clerk"), action="logout")
    assert logout["before"] == {"revoked_at": None} and logout["after"]["revoked_at"]
    update = _one(_audit(client, admin, entity_type="user"), action="update")
    assert (update["before"], update["after"]) == ({"full_name": "", "active": True},
                                                   {"full_name": "Lee Ji-eun", "active": False})


def test_audit_is_not_editable_through_the_api(client, admin):
    entry_id = _audit(client, admin)[0]["id"]
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        for path in ("/api/v1/audit", f"/api/v1/audit/{entry_id}"):
            response = client.request(method, path, headers=admin, json={"actor": "nobody"})
            assert response.status_code in (404, 405), (method, path, response.text)
    audit_routes = [(path, methods) for path, methods in _routes(client.app) if path.startswith("/api/v1/audit")]
    assert audit_routes
    for path, methods in audit_routes:
        assert methods <= {"GET", "HEAD"}, path
    assert _audit(client, admin)[-1]["actor"] in ("admin1", "test")


def test_audit_rows_cannot_be_changed_or_deleted_in_the_database(client, admin, sessions):
    with pytest.raises(PermissionError), transaction(sessions) as s:
        s.scalars(select(AuditEntry)).first().actor = "someone else"
    with pytest.raises(PermissionError), transaction(sessions) as s:
        s.delete(s.scalars(select(AuditEntry)).first())
    assert "someone else" not in str(_audit(client, admin))


# --- secrets never leave ------------------------------------------------------------------------

def _keys(value) -> set[str]:
    if isinstance(value, dict):
        return set(value) | {k for item in value.values() for k in _keys(item)}
    if isinstance(value, list):
        return {k for item in value for k in _keys(item)}
    return set()


def _secret_values(value, names=("password", "password_hash")) -> list:
    if isinstance(value, dict):
        found = [v for k, v in value.items() if k in names]
        return found + [v for item in value.values() for v in _secret_values(item, names)]
    if isinstance(value, list):
        return [v for item in value for v in _secret_values(item, names)]
    return []


def test_passwords_and_hashes_are_never_returned(client, admin, login):
    created = client.post("/api/v1/users", headers=admin, json={
        "username": "secret.keeper", "password": NEW_PASSWORD, "role": "operator", "full_name": "Park"})
    assert created.status_code == 201
    patched = client.patch("/api/v1/users/secret.keeper", headers=admin, json={"password": NEW_PASSWORD + "x"})
    assert patched.status_code == 200
    own = client.post("/api/v1/auth/token", json={"username": "secret.keeper", "password": NEW_PASSWORD + "x"})
    me = client.get("/api/v1/auth/me", headers={"Authorization": f"Bearer {own.json()['access_token']}"})
    user_bodies = [created, patched, me, client.get("/api/v1/users", headers=admin),
                   client.get("/api/v1/users/secret.keeper", headers=admin)]
    for response in user_bodies:
        assert response.status_code == 200 or response.status_code == 201
        for text in (NEW_PASSWORD, PASSWORD, "argon2", "password"):
            assert text not in response.text, (response.request.url, text)

    audit = client.get("/api/v1/audit", headers=admin, params={"limit": 1000})
    for text in (NEW_PASSWORD, PASSWORD, "argon2", own.json()["access_token"]):
        assert text not in audit.text, text
    # Where the audit mentions a password field at all, it shows only that it changed.
    values = _secret_values(audit.json())
    assert values and set(values) == {"***"}
    change = _one(audit.json(), action="update", entity_type="user", entity_id="secret.keeper")
    assert change["before"] == {"password_hash": "***"} or change["before"] == {"password": "***"}
    assert change["after"] == change["before"]


# --- error bodies -------------------------------------------------------------------------------

def _plain_error(response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert {"code", "message", "field"} <= set(body) <= {"code", "message", "field", "details"}
    assert "Traceback" not in response.text and 'File "' not in response.text
    assert ".py" not in response.text
    return body


def test_errors_carry_no_traceback(client, admin):
    assert _plain_error(client.get("/api/v1/nothing-here", headers=admin), 404)["code"] == "not_found"
    assert _plain_error(client.get("/api/v1/users/nobody", headers=admin), 404)["field"] == "username"
    body = _plain_error(client.post("/api/v1/users", headers=admin, json={"username": "X!", "role": "god"}), 422)
    assert body["code"] == "invalid"
    assert {d["field"] for d in body["details"]} >= {"username", "password", "role"}
    assert all(set(d) == {"field", "reason"} for d in body["details"])
    broken_json = client.post(f"{API}/sessions", content=b"{not json",
                              headers={**admin, "Content-Type": "application/json"})
    assert _plain_error(broken_json, 422)["code"] == "invalid"
    assert _plain_error(client.delete("/api/v1/users", headers=admin), 405)["code"] == "method_not_allowed"


def test_unexpected_errors_are_a_plain_500(settings, clock, sessions):
    app = create_app(settings, clock=clock)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret internal detail /etc/passwd")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom")
    body = _plain_error(response, 500)
    assert body == {"code": "internal", "message": "internal server error", "field": None}
    assert "secret internal detail" not in response.text
