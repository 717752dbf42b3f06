"""Numbers and days have declared bounds, on SQLite and PostgreSQL (whose INTEGER columns overflowed into server
errors): ids, offsets, sequence numbers, quotas and sizes beyond them are a 422 naming the field; a day is only
YYYY-MM-DD."""

from __future__ import annotations

from typing import Any

import pytest

API = "/api/v1"
HUGE = 2**63  # past any 64-bit integer


@pytest.fixture
def admin(client: Any, catalogue: Any, login: Any) -> dict[str, str]:
    return login("admin1", "admin")


def _refused(response: Any, field: str) -> None:
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field, response.json()


@pytest.mark.parametrize(("path", "field"), [
    (f"/waves/{HUGE}", "wave_id"),
    (f"/waves/{2**31}/events", "wave_id"),
    (f"/compliance/policies/{HUGE}", "policy_id"),
    (f"/compliance/sessions/{HUGE}", "session_id"),
    (f"/auth/api-keys/{HUGE}", "key_id"),
])
def test_an_id_beyond_its_column_is_refused(client: Any, admin: dict[str, str], path: str, field: str) -> None:
    method = "DELETE" if "/auth/api-keys/" in path or "/sessions/" in path else "GET"
    if "/policies/" in path:
        method = "PATCH"
    _refused(client.request(method, f"{API}{path}", headers=admin, json={"effective_until": "2030-01-01"}), field)


@pytest.mark.parametrize(("path", "params", "field"), [
    ("/audit", {"offset": HUGE}, "offset"),
    ("/compliance/meetings", {"offset": 10**20}, "offset"),
    ("/compliance/sessions", {"offset": HUGE}, "offset"),
    ("/jobs/x/events", {"after": HUGE}, "after"),
])
def test_an_offset_or_sequence_number_beyond_its_bound_is_refused(client: Any, admin: dict[str, str], path: str,
                                                                  params: dict[str, Any], field: str) -> None:
    _refused(client.get(f"{API}{path}", headers=admin, params=params), field)


@pytest.mark.parametrize("quota", [1e20, HUGE, -1])
def test_a_quota_beyond_its_bounds_is_refused(client: Any, admin: dict[str, str], quota: Any) -> None:
    spec = {"quotas": {"instances": quota, "cores": 4, "ram_mb": 4096, "volumes": 0}}
    _refused(client.put(f"{API}/cloud/agencies/MOIS/onboarding", headers=admin, json=spec), "quotas.instances")


def test_a_size_beyond_its_column_is_a_row_error(client: Any, admin: dict[str, str]) -> None:
    yaml = ("systems:\n- {code: mois-a, agency: MOIS, name_en: a, criticality: low, vcpus: 100000000000000000000, "
            "ram_mb: 1024, disk_gb: 10, components: [{kind: os, vendor: HPE, product: HP-UX, version: '11i v3'}]}\n")
    response = client.post(f"{API}/systems/import", headers=admin,
                           files={"file": ("systems.yaml", yaml.encode(), "application/yaml")})
    assert response.status_code == 422, response.text
    assert [(d["row"], d["field"]) for d in response.json()["details"]] == [(1, "vcpus")]


@pytest.mark.parametrize("day", ["0", "1", "20140101", "2014-1-1"])
def test_a_day_is_only_yyyy_mm_dd(client: Any, admin: dict[str, str], day: str) -> None:
    _refused(client.get(f"{API}/compliance/sessions", headers=admin, params={"to": day}), "to")
    body = {"meeting": "MOIS-LOCAL", "held_on": day, "mode": "video"}
    _refused(client.post(f"{API}/compliance/sessions", headers=admin, json=body), "held_on")
    number = {"meeting": "MOIS-LOCAL", "held_on": 0, "mode": "video"}
    _refused(client.post(f"{API}/compliance/sessions", headers=admin, json=number), "held_on")
