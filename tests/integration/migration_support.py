"""Fixtures and helpers of the migration inventory tests. A test module imports what it uses:

    from migration_support import agencies, operator  # noqa: F401  (fixtures)

(Not a conftest.py: a second module named conftest would shadow the root one for `from conftest import ...`.)
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml
from conftest import PASSWORD
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from controlplane.auth import service as auth_service
from controlplane.clock import FixedClock
from controlplane.cloud.models import CloudTenancy
from controlplane.db import transaction
from controlplane.inventory import files

API = "/api/v1"
SAMPLE = files.SAMPLE_INVENTORY_FILE.read_bytes()
SAMPLE_SYSTEMS = files.load_sample_inventory()
SAMPLE_AGENCIES = ("BUSAN", "MOEF", "MOHW", "MOIS", "MOLIT", "MSIT", "SEOUL")
# The sample's deliberately unknown components (see its header).
FLAGGED = {("mois-minwon", "components[4]", "unknown_component"), ("moef-edms", "components[4]", "unknown_component"),
           ("moef-stat", "components[1]", "unknown_version"), ("msit-spectrum", "components[4]", "unknown_component"),
           ("busan-minwon", "components[4]", "unknown_component")}


@pytest.fixture
def agencies(sessions: sessionmaker[Session], clock: FixedClock) -> None:
    """The agency catalogue `controlplane seed` loads (it has every agency of the sample inventory)."""
    with transaction(sessions) as session:
        auth_service.seed_agencies(session, clock=clock, actor="test")


@pytest.fixture
def operator(agencies: None, login: Callable[..., dict[str, str]]) -> dict[str, str]:
    return login("ops1", "operator")


def upload(client: TestClient, headers: dict[str, str], name: str, content: bytes | str, **params: Any) -> Any:
    """POST /api/v1/systems/import with the file; `params` are the query (mode, dry_run)."""
    return client.post(f"{API}/systems/import", headers=headers, params=params,
                       files={"file": (name, content, "application/octet-stream")})


def import_sample(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    response = upload(client, headers, "sample_inventory.yaml", SAMPLE)
    assert response.status_code == 200, response.text
    return dict(response.json())


def inventory_yaml(*systems: dict[str, Any]) -> str:
    """A YAML inventory of small valid systems: each dict overrides the defaults of one."""
    defaults = {"agency": "MOIS", "name_en": "A system", "criticality": "low", "vcpus": 2, "ram_mb": 2048,
                "disk_gb": 20, "components": [{"kind": "os", "vendor": "IBM", "product": "AIX", "version": "7.1"}]}
    return yaml.safe_dump({"systems": [{**defaults, **s} for s in systems]}, sort_keys=False)


# What the sample's systems need between their tiers and from the control plane (see ingress.traffic_needs).
TIERS_INGRESS = [{"protocol": "tcp", "port_min": port, "port_max": port, "remote_cidr": "10.0.0.0/8"}
                 for port in (22, 80, 8080, 5432)]


def add_tenancy(sessions: sessionmaker[Session], clock: FixedClock, *, cloud: str, agency: str, instances: int = 10,
                cores: int = 40, ram_mb: int = 65536, ingress: list[dict[str, Any]] | None = None) -> None:
    """The agency's onboarding spec on `cloud` with these quotas and ingress (default: what the tiers need; nothing
    applied: the cloud is not involved)."""
    with transaction(sessions) as session:
        found = auth_service.agency_by_code(session, code=agency)
        session.add(CloudTenancy(agency_id=found.id, cloud=cloud, quota_instances=instances, quota_cores=cores,
                                 quota_ram_mb=ram_mb, quota_volumes=0, cidr=f"10.81.{found.id}.0/24",
                                 ingress=TIERS_INGRESS if ingress is None else ingress,
                                 created_at=clock.now(), updated_at=clock.now()))


def page_login(client: TestClient, username: str) -> None:
    """Log in through the login form (the client keeps the cookie)."""
    client.cookies.clear()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/systems"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


def rows(html: str, attribute: str) -> list[str]:
    return re.findall(rf'<tr {attribute}="([^"]+)"', html)
