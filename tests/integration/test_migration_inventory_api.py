"""The migration inventory over HTTP, on SQLite and PostgreSQL: imports (CSV, YAML; all or nothing with row errors,
cycles named, merge, replace, dry run), exports that import back, agency scope, audit, the catalogue, adoption and
plans against the quotas and capacity the control plane keeps."""
# ruff: noqa: F811  (pytest fixtures imported from migration_support are parameters of the tests)

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from migration_support import (  # noqa: F401  (fixtures)
    API,
    FLAGGED,
    SAMPLE_AGENCIES,
    SAMPLE_SYSTEMS,
    add_tenancy,
    agencies,
    import_sample,
    inventory_yaml,
    operator,
    upload,
)
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane.auth.models import AuditEntry
from controlplane.clock import FixedClock
from controlplane.cloud.domain import HypervisorCapacity, ResourceUsage
from controlplane.cloud.metrics import CloudCollector
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.inventory import domain as inventory_domain
from controlplane.inventory import files, matching, planning
from controlplane.inventory import service as inventory
from controlplane.inventory.models import AgencySystem
from controlplane.waves.models import Migration, Wave

Headers = dict[str, str]


def _codes(client: TestClient, headers: Headers, **params: Any) -> list[str]:
    response = client.get(f"{API}/systems", headers=headers, params=params)
    assert response.status_code == 200, response.text
    return [s["code"] for s in response.json()]


def _imports(sessions: sessionmaker[Session]) -> list[AuditEntry]:
    with transaction(sessions) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.entity_type == "migration_system")))


def _agencies(filename: str, content: bytes) -> set[str]:
    """The agencies of an exported file's rows (one agency's systems do not parse alone: they call others')."""
    return {row["agency"] for row in files.inventory_file_rows(filename, content)[0]}


def _plan(client: TestClient, headers: Headers, **body: Any) -> dict[str, Any]:
    response = client.post(f"{API}/plans", headers=headers, json=body)
    assert response.status_code == 200, response.text
    return dict(response.json())


# --- import ----------------------------------------------------------------------------------------

def test_the_sample_inventory_imports_with_its_unknown_components_flagged_and_one_audit_row(
        client: TestClient, operator: Headers, sessions: sessionmaker[Session]) -> None:
    report = import_sample(client, operator)
    assert report["counts"] == {"created": 51, "updated": 0, "unchanged": 0, "deleted": 0}
    assert report["systems"] == 51 and report["mode"] == "merge" and report["dry_run"] is False
    assert report["catalogue_version"] == "2026.1"
    assert {(f["system"], f["field"], f["code"]) for f in report["findings"]} == FLAGGED
    listed = client.get(f"{API}/systems", headers=operator).json()
    assert len(listed) == 51 and {s["agency"] for s in listed} == set(SAMPLE_AGENCIES)
    assert {s["code"]: s["unknown_components"] for s in listed if s["unknown_components"]} == {
        code: 1 for code, _field, _code in FLAGGED}
    assert _codes(client, operator, status="migrated") == ["mois-addr"]
    assert _codes(client, operator, agency="BUSAN")[:2] == ["busan-acct", "busan-edms"]

    entries = _imports(sessions)
    assert [(e.action, e.actor, e.after) for e in entries] == [("import", "ops1", {
        "source": "sample_inventory.yaml", "mode": "merge", "created": 51, "updated": 0, "unchanged": 0,
        "deleted": 0, "flagged": 5, "deleted_systems": []})]


def test_a_system_shows_each_component_with_its_entry_target_and_grade_or_its_flag(
        client: TestClient, operator: Headers) -> None:
    import_sample(client, operator)
    system = client.get(f"{API}/systems/mois-minwon", headers=operator).json()
    assert system["agency"] == "MOIS" and system["criticality"] == "critical" and system["unknown_components"] == 1
    assert system["depends_on"] == ["mois-sso", "mois-edms", "mois-addr"]
    by_index = {m["index"]: m for m in system["matches"]}
    assert (by_index[1]["entry"], by_index[1]["target"], by_index[1]["role"], by_index[1]["grade"]) == (
        "tibero", "PostgreSQL 15", "postgresql", "B")
    assert by_index[1]["flag"] is None and by_index[1]["open_source"] is False
    unknown = by_index[4]
    assert (unknown["product"], unknown["entry"], unknown["target"], unknown["flag"]) == (
        "MiPlatform", None, None, "unknown_component")
    assert "no catalogue entry" in unknown["message"]
    migrated = client.get(f"{API}/systems/mois-addr", headers=operator).json()
    assert migrated["status"] == "migrated" and all(m["open_source"] for m in migrated["matches"])
    missing = client.get(f"{API}/systems/nope", headers=operator)
    assert missing.status_code == 404 and missing.json()["field"] == "code"


def test_csv_import_is_all_or_nothing_and_names_every_bad_row(
        client: TestClient, operator: Headers, sessions: sessionmaker[Session]) -> None:
    header = "code,agency,name_en,criticality,vcpus,ram_mb,disk_gb,components,depends_on\n"
    good = "good-one,MOIS,Good,low,2,2048,20,os:IBM:AIX:7.1,\n"
    content = header + good + ("bad-crit,MOIS,Bad,urgent,2,2048,20,os:IBM:AIX:7.1,\n"
                               "no-agency,NOWHERE,Bad,low,2,2048,20,os:IBM:AIX:7.1,\n"
                               "\n"
                               "bad-size,MOIS,Bad,low,many,2048,20,os:IBM:AIX:7.1,good-one\n"
                               "dangling,MOIS,Bad,low,2,2048,20,os:IBM:AIX:7.1,ghost\n")
    response = upload(client, operator, "systems.csv", content)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "import_failed" and body["field"] == "file" and "nothing was imported" in body["message"]
    assert [(d["row"], d["field"], d["code"]) for d in body["details"]] == [
        (3, "criticality", "invalid"), (4, "agency", "unknown_agency"), (6, "vcpus", "invalid"),
        (7, "depends_on", "unknown_dependency")]
    assert body["details"][1]["reason"].startswith("unknown agency 'NOWHERE'")
    assert _codes(client, operator) == [] and _imports(sessions) == []

    assert upload(client, operator, "systems.csv", header + good).status_code == 200
    assert _codes(client, operator) == ["good-one"]
    for name, content, reason in [("systems.txt", "x", "must be .csv, .yaml or .yml"),
                                  ("systems.csv", "code,agency,colour\n", "unknown columns: colour"),
                                  ("systems.yaml", "systems: {a: 1}", "a YAML inventory is a list"),
                                  ("systems.csv", header, "the file has no systems"),
                                  ("systems.csv", b"\xff\xfe", "must be UTF-8")]:
        refused = upload(client, operator, name, content)
        assert refused.status_code == 422 and reason in refused.json()["message"], (name, refused.text)
    assert _codes(client, operator) == ["good-one"]


def test_a_dependency_cycle_is_refused_naming_it_also_with_stored_systems(
        client: TestClient, operator: Headers) -> None:
    cycle = inventory_yaml({"code": "sys-a", "depends_on": ["sys-b"]}, {"code": "sys-b", "depends_on": ["sys-c"]},
                           {"code": "sys-c", "depends_on": ["sys-a"]})
    response = upload(client, operator, "cycle.yaml", cycle)
    assert response.status_code == 422
    assert [(d["row"], d["system"], d["code"], d["reason"]) for d in response.json()["details"]] == [
        (1, "sys-a", "dependency_cycle", "dependency cycle: sys-a -> sys-b -> sys-c -> sys-a")]

    # Merge: a file may depend on stored systems, and must not close a cycle with them.
    assert upload(client, operator, "base.yaml", inventory_yaml({"code": "sys-a"})).status_code == 200
    assert upload(client, operator, "more.yaml", inventory_yaml(
        {"code": "sys-b", "depends_on": ["sys-a"]})).status_code == 200
    closing = upload(client, operator, "closing.yaml", inventory_yaml({"code": "sys-a", "depends_on": ["sys-b"]}))
    assert closing.status_code == 422
    detail = closing.json()["details"][0]
    assert (detail["code"], detail["reason"]) == ("dependency_cycle", "dependency cycle: sys-a -> sys-b -> sys-a")
    # In replace mode the file is the whole inventory: what it depends on must be in it.
    alone = upload(client, operator, "alone.yaml", inventory_yaml({"code": "sys-b", "depends_on": ["sys-a"]}),
                   mode="replace")
    assert alone.status_code == 422 and alone.json()["details"][0]["code"] == "unknown_dependency"
    assert _codes(client, operator) == ["sys-a", "sys-b"]


def test_merge_updates_by_code_and_dry_run_writes_nothing(
        client: TestClient, operator: Headers, sessions: sessionmaker[Session], clock: FixedClock) -> None:
    import_sample(client, operator)
    change = inventory_yaml({"code": "mois-gpki", "agency": "MOIS", "name_ko": "행정전자서명 인증관리",
                             "criticality": "critical", "maintenance_window": "Sun 02:00-06:00", "vcpus": 8,
                             "ram_mb": 8192, "disk_gb": 300, "data_gb": 40,
                             "components": [{"kind": "os", "vendor": "HPE", "product": "HP-UX", "version": "11i v3"}]},
                            {"code": "new-one", "agency": "MOEF", "depends_on": ["mois-gpki"]})
    dry = upload(client, operator, "change.yaml", change, dry_run="true").json()
    assert (dry["dry_run"], dry["created"], dry["updated"], dry["counts"]["unchanged"]) == (
        True, ["new-one"], ["mois-gpki"], 0)
    assert "new-one" not in _codes(client, operator) and len(_imports(sessions)) == 1

    clock.advance(timedelta(minutes=5))
    done = upload(client, operator, "change.yaml", change).json()
    assert (done["created"], done["updated"], done["deleted"]) == (["new-one"], ["mois-gpki"], [])
    gpki = client.get(f"{API}/systems/mois-gpki", headers=operator).json()
    assert gpki["vcpus"] == 8 and len(gpki["components"]) == 1 and gpki["updated_at"] > gpki["created_at"]
    assert len(_codes(client, operator)) == 52
    again = upload(client, operator, "change.yaml", change).json()
    assert again["counts"] == {"created": 0, "updated": 0, "unchanged": 2, "deleted": 0}
    assert [e.after["updated"] for e in _imports(sessions) if e.after] == [0, 1, 0]


def test_replace_deletes_what_the_file_leaves_out_but_never_a_system_with_a_migration(
        client: TestClient, operator: Headers, sessions: sessionmaker[Session], clock: FixedClock) -> None:
    import_sample(client, operator)
    kept = inventory_yaml({"code": "mois-gpki", "criticality": "critical", "maintenance_window": "Sun 02:00-06:00"},
                          {"code": "brand-new"})
    dry = upload(client, operator, "kept.yaml", kept, mode="replace", dry_run="true").json()
    assert dry["counts"] == {"created": 1, "updated": 1, "unchanged": 0, "deleted": 50}
    assert "mois-addr" in dry["deleted"] and len(_codes(client, operator)) == 51

    with transaction(sessions) as session:
        system = session.scalar(select(AgencySystem).where(AgencySystem.code == "moef-hr"))
        assert system is not None
        wave = Wave(name="wave-1", state="draft", catalogue_version="2026.1", cloud="devcloud", created_by="ops1",
                    created_at=clock.now())
        session.add(wave)
        session.flush()
        session.add(Migration(id=str(uuid.uuid4()), wave_id=wave.id, system_id=system.id,
                              agency_id=system.agency_id, position=1, state="pending", plan={},
                              created_at=clock.now()))
    refused = upload(client, operator, "kept.yaml", kept, mode="replace")
    assert refused.status_code == 409, refused.text
    assert refused.json()["field"] == "mode" and "moef-hr" in refused.json()["message"]
    assert len(_codes(client, operator)) == 51

    done = upload(client, operator, "kept.yaml", inventory_yaml(
        {"code": "moef-hr", "agency": "MOEF"}, {"code": "brand-new"}), mode="replace").json()
    assert done["counts"] == {"created": 1, "updated": 1, "unchanged": 0, "deleted": 50}
    assert _codes(client, operator) == ["moef-hr", "brand-new"]
    assert _imports(sessions)[-1].after == {"source": "kept.yaml", "mode": "replace", "created": 1, "updated": 1,
                                            "unchanged": 0, "deleted": 50, "flagged": 0,
                                            "deleted_systems": done["deleted"]}


# --- export ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fmt", ["csv", "yaml"])
def test_an_export_imports_back_to_the_same_systems(client: TestClient, operator: Headers, fmt: str) -> None:
    import_sample(client, operator)
    response = client.get(f"{API}/systems/export", headers=operator, params={"format": fmt})
    assert response.status_code == 200
    assert response.headers["content-disposition"] == f'attachment; filename="systems.{fmt}"'
    exported = files.read_inventory(f"systems.{fmt}", response.content)
    assert sorted(exported, key=lambda s: s.code) == sorted(SAMPLE_SYSTEMS, key=lambda s: s.code)
    again = upload(client, operator, f"systems.{fmt}", response.content, mode="replace").json()
    assert again["counts"] == {"created": 0, "updated": 0, "unchanged": 51, "deleted": 0}
    assert client.get(f"{API}/systems/export", headers=operator, params={"format": fmt}).content == response.content

    one = client.get(f"{API}/systems/export", headers=operator, params={"format": fmt, "agency": "MOEF"})
    assert _agencies(f"x.{fmt}", one.content) == {"MOEF"}
    # MOEF's systems call MOIS's: merged back, they are checked with the stored ones.
    assert upload(client, operator, f"moef.{fmt}", one.content).json()["counts"]["unchanged"] == 7


# --- who may do what -------------------------------------------------------------------------------

def test_a_ministry_sees_its_own_agency_only_and_others_no_inventory(
        client: TestClient, operator: Headers, login: Callable[..., Headers]) -> None:
    import_sample(client, operator)
    ministry = login("mois-user", "ministry", "MOIS")
    assert {c.split("-")[0] for c in _codes(client, ministry)} == {"mois"}
    assert _codes(client, ministry, agency="MOEF") == []
    assert client.get(f"{API}/systems/mois-gpki", headers=ministry).status_code == 200
    other = client.get(f"{API}/systems/moef-dbrain", headers=ministry)
    assert other.status_code == 404 and other.json()["message"] == "unknown system 'moef-dbrain'"
    exported = client.get(f"{API}/systems/export", headers=ministry, params={"format": "yaml"})
    assert _agencies("x.yaml", exported.content) == {"MOIS"}
    assert [a["agency"] for a in client.get(f"{API}/adoption", headers=ministry).json()["agencies"]] == ["MOIS"]
    assert upload(client, ministry, "x.yaml", inventory_yaml({"code": "x"})).status_code == 403
    planned = client.post(f"{API}/plans", headers=ministry, json={})
    assert planned.status_code == 403 and planned.json()["field"] == "role"
    assert client.get(f"{API}/catalogue", headers=ministry).status_code == 200

    auditor = login("auditor1", "auditor")
    assert len(_codes(client, auditor)) == 51
    assert upload(client, auditor, "x.yaml", inventory_yaml({"code": "x"})).status_code == 403
    assert client.post(f"{API}/plans", headers=auditor, json={"systems": ["mois-gpki"]}).status_code == 200

    secretariat = login("sec1", "secretariat")
    for path in ("/systems", "/systems/mois-gpki", "/systems/export", "/catalogue", "/adoption"):
        assert client.get(f"{API}{path}", headers=secretariat).status_code == 403, path
        assert client.get(f"{API}{path}").status_code == 401, path
    assert client.post(f"{API}/plans", headers=secretariat, json={}).status_code == 403
    assert upload(client, {}, "x.yaml", "").status_code == 401
    unknown = client.get(f"{API}/systems", headers=operator, params={"agency": "NOPE"})
    assert unknown.status_code == 404 and unknown.json()["field"] == "agency"


# --- catalogue and adoption ------------------------------------------------------------------------

def test_the_catalogue_lists_its_version_and_entries(client: TestClient, operator: Headers) -> None:
    body = client.get(f"{API}/catalogue", headers=operator).json()
    assert body["version"] == "2026.1" and len(body["entries"]) == 32
    oracle = next(e for e in body["entries"] if e["id"] == "oracle-database")
    assert (oracle["kind"], oracle["target"]["product"], oracle["role"], oracle["data_move"]["format"]) == (
        "db", "PostgreSQL", "postgresql", "sql")
    assert oracle["versions"] == {"min": "9", "max": "21"}


def test_adoption_per_agency_now_and_after_migrating(client: TestClient, operator: Headers) -> None:
    assert client.get(f"{API}/adoption", headers=operator).json()["agencies"] == []
    import_sample(client, operator)
    body = client.get(f"{API}/adoption", headers=operator).json()
    expected = {a.agency: a.to_dict() for a in matching.adoption(SAMPLE_SYSTEMS, inventory.shipped_catalogue())}
    assert [row["agency"] for row in body["agencies"]] == sorted(SAMPLE_AGENCIES)
    for row in body["agencies"]:
        assert {k: row[k] for k in expected[row["agency"]]} == expected[row["agency"]]
    mois = next(row for row in body["agencies"] if row["agency"] == "MOIS")
    assert (mois["name_ko"], mois["components"], mois["open_now"], mois["open_after"], mois["unknown"]) == (
        "행정안전부", 38, 14, 34, 1)
    total = body["total"]
    assert (total["agency"], total["components"], total["open_now"], total["open_after"], total["unknown"]) == (
        "ALL", 207, 65, 188, 5)
    assert (total["share_now"], total["share_after"]) == (0.314, 0.9082)


# --- plans -----------------------------------------------------------------------------------------

def test_a_clean_plan_prints_like_terraform_plan(
        client: TestClient, operator: Headers, sessions: sessionmaker[Session], clock: FixedClock,
        settings: Settings) -> None:
    import_sample(client, operator)
    add_tenancy(sessions, clock, cloud=settings.cloud, agency="MOIS")
    plan = _plan(client, operator, systems=["mois-gpki"])
    assert plan["ok"] is True and plan["findings"] == []
    assert plan["counts"] == {"servers": 3, "role_applications": 8, "data_moves": 1, "systems": 1, "waves": 1,
                              "findings": 0}
    assert plan["summary"] == "3 to create, 8 roles to apply, 1 data move"
    [wave] = plan["waves"]
    assert [s["name"] for s in wave["systems"][0]["servers"]] == ["mois-gpki-db-1", "mois-gpki-app-1",
                                                                 "mois-gpki-web-1"]
    lines = plan["text"].splitlines()
    assert lines[0] == "Migration plan (catalogue 2026.1): 1 systems in 1 waves"
    assert "    ~ db Oracle Database 11g -> PostgreSQL 15 (grade B, oracle-database)" in lines
    assert ("    + server mois-gpki-db-1 (large: 4 vCPU, 4096 MB, 100 GB disk) image debian-12, network "
            "agency-mois-net") in lines
    assert lines[-1] == "Plan: 3 to create, 8 roles to apply, 1 data move." and "Findings" not in plan["text"]
    # The same plan the domain makes of the stored systems.
    with transaction(sessions) as session:
        quotas, free = inventory.capacity_inputs(session, cloud=settings.cloud)
        assert plan["text"] == inventory.build_plan(session, codes=["mois-gpki"], quotas=quotas,
                                                    cloud_free=free).render()


def test_a_plan_reports_unknown_components_missing_quotas_and_bad_groupings(
        client: TestClient, operator: Headers) -> None:
    import_sample(client, operator)
    plan = _plan(client, operator, systems=["moef-stat", "moef-dbrain", "ghost", "mois-addr"])
    assert plan["ok"] is False
    found = {(f["code"], f["system"]) for f in plan["findings"]}
    assert {("unknown_version", "moef-stat"), ("no_quota", "moef-dbrain"), ("unknown_system", "ghost"),
            ("system_migrated", "mois-addr"), ("dependency_not_planned", "moef-dbrain")} <= found
    assert "! moef-stat components[1]: Oracle Database 8i (Oracle) is outside the versions" in plan["text"]
    assert "Findings (" in plan["text"] and "MOEF has no quota on the cloud" in plan["text"]

    waves = _plan(client, operator, waves=[["mois-sso"], ["mois-gpki"]])
    assert [(f["code"], f["system"], f["wave"]) for f in waves["findings"] if f["code"] == "dependency_order"] == [
        ("dependency_order", "mois-sso", 1)]
    every = _plan(client, operator)
    assert every["counts"]["systems"] == 45 and every["counts"]["waves"] == 4
    assert {f["system"] for f in every["findings"] if f["code"].startswith("unknown_")} == {
        code for code, _field, _code in FLAGGED}

    for body, field in [({"systems": ["a"], "waves": [["a"]]}, "waves"), ({"waves": [[]]}, "waves.0"),
                        ({"systems": []}, "systems"), ({"colour": "red"}, "colour")]:
        response = client.post(f"{API}/plans", headers=operator, json=body)
        assert response.status_code == 422 and response.json()["field"] == field, response.text


def test_a_plan_uses_the_cached_quota_use_and_hypervisor_capacity(
        client: TestClient, operator: Headers, sessions: sessionmaker[Session], clock: FixedClock,
        settings: Settings) -> None:
    import_sample(client, operator)
    add_tenancy(sessions, clock, cloud=settings.cloud, agency="MOIS", cores=8)
    small = _plan(client, operator, systems=["mois-gpki"])
    assert [(f["code"], f["field"]) for f in small["findings"]] == [("over_quota", "quota.cores")]
    assert "takes MOIS over its quota of 8 cores: 0 in use + 12 planned = 12" in small["text"]

    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    ctx.metrics.of(CloudCollector).refreshed(at=clock.now(), quotas={"MOIS": [
        ResourceUsage("instances", 20, 2), ResourceUsage("cores", 40, 30), ResourceUsage("ram_mb", 65536, 1024)]},
        hypervisors=[HypervisorCapacity("hv-1", vcpus=16, vcpus_used=8, memory_mb=65536, memory_mb_used=4096,
                                      running_vms=2)])
    cached = _plan(client, operator, systems=["mois-gpki"])
    assert [(f["code"], f["field"]) for f in cached["findings"]] == [("over_quota", "quota.cores"),
                                                                    ("over_cloud_capacity", "cloud.cores")]
    assert "over its quota of 40 cores: 30 in use + 12 planned = 42" in cached["text"]
    assert "12 planned, 8 free" in cached["text"]
    with transaction(sessions) as session:
        quotas, free = inventory.capacity_inputs(session, cloud=settings.cloud,
                                                 cached=ctx.metrics.of(CloudCollector).snapshot)
        assert quotas == {"MOIS": planning.Quota(planning.Resources(20, 40, 65536), planning.Resources(2, 30, 1024))}
        assert free == planning.Resources(inventory_domain.UNLIMITED, 8, 61440)
        assert inventory.capacity_inputs(session, cloud="elsewhere") == (
            {}, planning.Resources(inventory_domain.UNLIMITED, inventory_domain.UNLIMITED, inventory_domain.UNLIMITED))


def test_domain_systems_read_back_what_was_imported(client: TestClient, operator: Headers,
                                                    sessions: sessionmaker[Session]) -> None:
    import_sample(client, operator)
    with transaction(sessions) as session:
        stored = inventory.domain_systems(session)
        assert stored == tuple(sorted(SAMPLE_SYSTEMS, key=lambda s: s.code))
        assert [s.code for s in inventory.domain_systems(session, codes=["mois-sso", "ghost", "busan-hr"])] == [
            "busan-hr", "mois-sso"]
