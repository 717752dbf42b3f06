"""A password reset revokes every token and API key of the user, says how many, and is audited.

The finding it answers: a reset revoked the login tokens only, so API keys made by whoever held the old password
kept working.
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import PASSWORD
from fastapi.testclient import TestClient

TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"
KEYS = "/api/v1/auth/api-keys"
NEW_PASSWORD = "Fresh-start-password-2014"


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def _token(client: TestClient, username: str, password: str = PASSWORD) -> str:
    response = client.post(TOKEN, json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def _key(client: TestClient, token: str, name: str, **extra: Any) -> dict[str, Any]:
    response = client.post(KEYS, headers=_bearer(token), json={"name": name, **extra})
    assert response.status_code == 201, response.text
    return dict(response.json())


def _works(client: TestClient, secret: str) -> bool:
    by_bearer = client.get(ME, headers=_bearer(secret)).status_code
    by_header = client.get(ME, headers={"X-API-Key": secret}).status_code if secret.startswith("cpk_") else by_bearer
    assert by_bearer == by_header
    return by_bearer == 200


@pytest.fixture
def admin(client: TestClient, login: Any) -> dict[str, str]:
    return login("root", "admin")


@pytest.fixture
def grace(client: TestClient, make_user: Any) -> dict[str, Any]:
    """An operator with two live tokens, two live API keys and one key she revoked herself."""
    make_user("grace", "operator")
    tokens = [_token(client, "grace"), _token(client, "grace")]
    keys = [_key(client, tokens[0], "nightly"), _key(client, tokens[0], "backup", expires_in_days=30)]
    revoked = _key(client, tokens[0], "old")
    assert client.delete(f"{KEYS}/{revoked['id']}", headers=_bearer(tokens[0])).status_code == 204
    assert all(_works(client, secret) for secret in [*tokens, *(k["key"] for k in keys)])
    return {"tokens": tokens, "keys": [k["key"] for k in keys]}


def test_a_reset_revokes_every_token_and_api_key_and_says_how_many(client, admin, grace):
    response = client.patch("/api/v1/users/grace", headers=admin, json={"password": NEW_PASSWORD})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["revoked"] == {"tokens": 2, "api_keys": 2}  # the key revoked before does not count
    assert body["username"] == "grace" and "password" not in response.text
    for secret in [*grace["tokens"], *grace["keys"]]:
        assert not _works(client, secret), secret[:8]
    # The new password works, and so do keys made after the reset.
    fresh = _token(client, "grace", NEW_PASSWORD)
    assert _works(client, fresh)
    assert _works(client, _key(client, fresh, "after reset")["key"])
    assert client.post(TOKEN, json={"username": "grace", "password": PASSWORD}).status_code == 401


def test_the_revocation_is_audited_without_any_secret(client, admin, grace):
    client.patch("/api/v1/users/grace", headers=admin, json={"password": NEW_PASSWORD})
    audit = client.get("/api/v1/audit", headers=admin, params={"entity_type": "user", "limit": 1000})
    (row,) = [e for e in audit.json() if e["action"] == "revoke_credentials"]
    assert (row["entity_id"], row["actor"]) == ("grace", "root")
    assert row["after"] == {"reason": "password_reset", "tokens": 2, "api_keys": 2}
    for secret in [NEW_PASSWORD, *grace["tokens"], *grace["keys"]]:
        assert secret not in audit.text
    update = [e for e in audit.json() if e["action"] == "update" and e["entity_id"] == "grace"]
    assert update and update[0]["after"] == {"password_hash": "***"}


def test_other_changes_revoke_nothing_and_deactivation_revokes_the_tokens(client, admin, grace):
    renamed = client.patch("/api/v1/users/grace", headers=admin, json={"full_name": "Grace Hopper"})
    assert renamed.status_code == 200 and renamed.json()["revoked"] == {"tokens": 0, "api_keys": 0}
    assert all(_works(client, secret) for secret in [*grace["tokens"], *grace["keys"]])

    deactivated = client.patch("/api/v1/users/grace", headers=admin, json={"active": False})
    assert deactivated.json()["revoked"] == {"tokens": 2, "api_keys": 0}
    assert not any(_works(client, secret) for secret in [*grace["tokens"], *grace["keys"]])
    # Keys of an inactive user are dormant, not revoked: they work again once she is active again.
    client.patch("/api/v1/users/grace", headers=admin, json={"active": True})
    assert all(_works(client, key) for key in grace["keys"])
    assert not any(_works(client, token) for token in grace["tokens"])


def test_a_reset_of_a_bad_password_is_refused_and_revokes_nothing(client, admin, grace):
    response = client.patch("/api/v1/users/grace", headers=admin, json={"password": "short"})
    assert response.status_code == 422 and response.json()["field"] == "password"
    assert all(_works(client, secret) for secret in [*grace["tokens"], *grace["keys"]])
