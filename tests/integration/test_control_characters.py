"""Text with control characters is refused wherever a caller sends it, on SQLite and PostgreSQL (which would fail
on a NUL with a server error): JSON bodies at any depth, the path, the query string, form fields, imported rows."""

from __future__ import annotations

from typing import Any

import pytest

API = "/api/v1"


@pytest.fixture
def admin(client: Any, catalogue: Any, login: Any) -> dict[str, str]:
    return login("admin1", "admin")


def _refused(response: Any, field: str) -> str:
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == field, body
    assert "control character" in body["message"], body
    assert response.headers["x-content-type-options"] == "nosniff"  # refused before any route, headers all the same
    return str(body["message"])


@pytest.mark.parametrize("text", ["a\x00b", "\x1b[2Jcleared", "bell\x07", "del\x7f", "c1\x85"])
def test_a_body_text_with_a_control_character_is_refused_and_nothing_is_stored(client: Any, admin: dict[str, str],
                                                                               text: str) -> None:
    body = {"meeting": "MOIS-LOCAL", "held_on": "2014-05-02", "mode": "video", "note": text}
    _refused(client.post(f"{API}/compliance/sessions", headers=admin, json=body), "note")
    assert client.get(f"{API}/compliance/sessions", headers=admin).json() == []


def test_tabs_and_line_breaks_are_text(client: Any, admin: dict[str, str]) -> None:
    body = {"meeting": "MOIS-LOCAL", "held_on": "2014-05-02", "mode": "video", "note": "line 1\r\n\tline 2"}
    created = client.post(f"{API}/compliance/sessions", headers=admin, json=body)
    assert created.status_code == 201, created.text
    assert created.json()["note"] == "line 1\r\n\tline 2"


def test_a_control_character_deep_in_a_job_request_is_refused_naming_where(client: Any, admin: dict[str, str]) -> None:
    job = {"playbook": "site.yml", "credential": "none", "hosts": [{"name": "web-1", "address": "10.78.0.1"}],
           "extravars": {"nginx_upstreams": [{"deep": "10.0.0.1\x00"}]}}
    message = _refused(client.post(f"{API}/jobs", headers=admin, json=job), "extravars")
    assert "at extravars.nginx_upstreams.0.deep" in message
    job["hosts"] = [{"name": "web-1", "address": "10.78.0.1", "vars": {"nginx\x00": 1}}]
    job["extravars"] = {}
    message = _refused(client.post(f"{API}/jobs", headers=admin, json=job), "hosts.0.vars")
    assert "nginx\\x00" in message and "\x00" not in message  # the bad key is shown escaped, never echoed raw


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/compliance/shares", {"period": "2014", "ministry": "MOIS\x00"}, "ministry"),
    ("/compliance/sessions", {"meeting": "\x00"}, "meeting"),
    ("/audit", {"actor": "admin\x1b"}, "actor"),
    ("/systems", {"agency": "MOIS\x00"}, "agency"),
])
def test_a_query_parameter_with_a_control_character_is_refused_naming_it(client: Any, admin: dict[str, str],
                                                                         path: str, params: dict[str, str],
                                                                         field: str) -> None:
    _refused(client.get(f"{API}{path}", headers=admin, params=params), field)


def test_a_path_with_a_control_character_is_refused(client: Any, admin: dict[str, str]) -> None:
    _refused(client.get(f"{API}/agencies/MOIS%00", headers=admin), "path")
    _refused(client.get(f"{API}/users/admin%1b", headers=admin), "path")


def test_an_imported_row_with_a_control_character_is_refused_with_its_number(client: Any,
                                                                           admin: dict[str, str]) -> None:
    csv = "meeting_code,held_on,mode,note\nMOIS-LOCAL,2014-05-02,video,fine\nMOIS-LOCAL,2014-05-03,video,bad\x00\n"
    response = client.post(f"{API}/compliance/sessions/import", headers=admin,
                           files={"file": ("sessions.csv", csv.encode(), "text/csv")})
    assert response.status_code == 422, response.text
    assert [(d["row"], d["field"]) for d in response.json()["details"]] == [(3, "note")]
    assert client.get(f"{API}/compliance/sessions", headers=admin).json() == []


def test_a_system_row_with_a_control_character_is_refused_with_its_number(client: Any, admin: dict[str, str]) -> None:
    common = "criticality: low, vcpus: 1, ram_mb: 1024, disk_gb: 10, components: [{kind: os, vendor: HPE, " \
             "product: HP-UX, version: '11i v3'}]"
    yaml = (f"systems:\n- {{code: mois-a, agency: MOIS, name_en: \"fine\", {common}}}\n"
            f"- {{code: mois-b, agency: MOIS, name_en: \"bad\\0name\", {common}}}\n")
    response = client.post(f"{API}/systems/import", headers=admin,
                           files={"file": ("systems.yaml", yaml.encode(), "application/yaml")})
    assert response.status_code == 422, response.text
    assert [(d["row"], d["field"]) for d in response.json()["details"]] == [(2, "name_en")]
