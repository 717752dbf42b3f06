"""Security headers on everything the server answers, without touching the headers the pages set themselves."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import PASSWORD
from fastapi.testclient import TestClient

FRAME_AND_SNIFF = {
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


def _protected(response: Any, *, no_store: bool = True) -> None:
    for name, value in FRAME_AND_SNIFF.items():
        assert response.headers.get(name) == value, (response.request.url, name, response.headers.get(name))
    assert "frame-ancestors 'none'" in response.headers.get("content-security-policy", "")
    if no_store:
        assert response.headers.get("cache-control") == "no-store", response.request.url
    # One of each: filled in where missing, never doubled.
    for name in (*FRAME_AND_SNIFF, "content-security-policy", "cache-control"):
        assert len(response.headers.get_list(name)) <= 1, name


def test_token_responses_are_never_stored(client: TestClient, make_user: Any) -> None:
    make_user("alice", "operator")
    ok = client.post("/api/v1/auth/token", json={"username": "alice", "password": PASSWORD})
    assert ok.status_code == 200
    _protected(ok)
    assert ok.headers["pragma"] == "no-cache"
    wrong = client.post("/api/v1/auth/token", json={"username": "alice", "password": "wrong-password-1"})
    assert wrong.status_code == 401
    _protected(wrong)
    invalid = client.post("/api/v1/auth/token", json={"username": "alice"})
    assert invalid.status_code == 422
    _protected(invalid)


def test_api_responses(client: TestClient, login: Any) -> None:
    admin = login("root", "admin")
    for response in (client.get("/api/v1/auth/me", headers=admin), client.get("/api/v1/users", headers=admin),
                     client.get("/api/v1/auth/me"), client.post("/api/v1/auth/api-keys", headers=admin, json={}),
                     client.get("/healthz")):
        _protected(response)


@pytest.mark.parametrize("path", ["/no/such/page", "/api/v1/no-such-route", "/docs", "/openapi.json",
                                  "/docs/oauth2-redirect"])
def test_404s_and_the_api_docs(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code in (200, 404)
    _protected(response)


def test_static_files_may_be_cached_but_not_sniffed_or_framed(client: TestClient) -> None:
    response = client.get("/static/app.css")
    assert response.status_code == 200
    _protected(response, no_store=False)
    assert "no-store" not in response.headers.get("cache-control", "")
    missing = client.get("/static/nothing.css")
    assert missing.status_code == 404
    _protected(missing, no_store=False)


def test_the_pages_keep_their_own_headers(client: TestClient) -> None:
    page = client.get("/login")
    assert page.status_code == 200
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "script-src 'none'" in csp and "frame-ancestors 'none'" in csp
    assert page.headers["referrer-policy"] == "same-origin"  # the page's, not the API's no-referrer
    assert page.headers.get_list("content-security-policy") == [csp]
    assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
