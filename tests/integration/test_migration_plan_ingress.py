"""Plans against the agencies' declared ingress, over HTTP on SQLite and PostgreSQL: the traffic a system's tiers
need from each other and from the control plane, which the agency's security group would drop, is a warning."""

# ruff: noqa: F811  (pytest fixtures imported from migration_support are parameters of the tests)
from __future__ import annotations

from fastapi.testclient import TestClient
from migration_support import (  # noqa: F401  (fixtures)
    API,
    add_tenancy,
    agencies,
    import_sample,
    operator,
)
from sqlalchemy.orm import Session, sessionmaker

from controlplane.clock import FixedClock
from controlplane.config import Settings

Headers = dict[str, str]


def test_a_plan_warns_when_the_declared_ingress_does_not_cover_the_tiers(
        client: TestClient, operator: Headers, sessions: sessionmaker[Session], clock: FixedClock,
        settings: Settings) -> None:
    import_sample(client, operator)
    # As tried by an operator: the agency declared SSH and HTTP only, but the app tier listens on 8080 behind the
    # front and on the database's side PostgreSQL is reached from the agency network.
    add_tenancy(sessions, clock, cloud=settings.cloud, agency="MOIS", ingress=[
        {"protocol": "tcp", "port_min": port, "port_max": port, "remote_cidr": "10.0.0.0/8"} for port in (22, 80)])
    response = client.post(f"{API}/plans", headers=operator, json={"systems": ["mois-gpki"]})
    assert response.status_code == 200, response.text
    plan = response.json()

    assert plan["ok"] is True and plan["findings"] == []
    assert [(w["code"], w["system"], w["field"]) for w in plan["warnings"]] == [
        ("ingress_not_declared", "mois-gpki", "ingress")] * 2
    cidr = next(w for w in plan["warnings"])["message"].split(" from ")[1].split(",")[0]
    assert [w["message"].split(",")[0] for w in plan["warnings"]] == [
        f"the web tier to the app tier (Tomcat) needs tcp 8080 from {cidr}",
        f"the application to its database (PostgreSQL) needs tcp 5432 from {cidr}"]
    assert "Warnings (2): the plan can be applied, but this traffic would be dropped" in plan["text"]


def test_a_plan_whose_ingress_covers_the_tiers_has_no_warning(
        client: TestClient, operator: Headers, sessions: sessionmaker[Session], clock: FixedClock,
        settings: Settings) -> None:
    import_sample(client, operator)
    add_tenancy(sessions, clock, cloud=settings.cloud, agency="MOIS")
    plan = client.post(f"{API}/plans", headers=operator, json={"systems": ["mois-gpki"]}).json()
    assert plan["warnings"] == [] and "Warnings" not in plan["text"]
