"""What every API route shares, seen from outside: a 405 names every method of the path (routes of included
routers too), and the OpenAPI document declares the statuses of each operation's kind with the error body."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.mark.parametrize(("path", "allowed"), [
    ("/api/v1/agencies", "GET, POST"),
    ("/api/v1/agencies/MOIS", "GET, PATCH"),
    ("/api/v1/credentials/hosts-root", "DELETE, PUT"),
    ("/healthz", "GET"),
])
def test_a_method_not_allowed_names_every_method_of_the_path(client: Any, path: str, allowed: str) -> None:
    response = client.request("OPTIONS", path)
    assert response.status_code == 405
    assert response.headers["allow"] == allowed
    assert response.json()["code"] == "method_not_allowed"


def test_the_document_declares_the_statuses_of_each_operations_kind(client: Any) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    # A guarded route with a path parameter and a body; a public one with a query only; the login.
    assert set(paths["/api/v1/agencies/{code}"]["patch"]["responses"]) >= {"200", "400", "401", "403", "404", "409",
                                                                         "413", "422"}
    assert set(paths["/api/v1/open-data/remote-meetings"]["get"]["responses"]) == {"200", "422"}
    assert set(paths["/api/v1/auth/token"]["post"]["responses"]) >= {"200", "400", "401", "422", "429"}
    error = paths["/api/v1/agencies/{code}"]["patch"]["responses"]["422"]["content"]["application/json"]["schema"]
    assert error == {"$ref": "#/components/schemas/ErrorBody"}
