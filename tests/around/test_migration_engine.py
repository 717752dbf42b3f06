"""The migration engine's workflows (DBOS, on a system database of their own) around fake ports: a wave of three
dependent systems, the approval gate, dependencies cut over first, a configure failure that stops one system only
and a retry from the failed step, pause and resume, cancel, rollback proven by what the cloud still holds, bad
input refused with nothing made, and scope. The same on the real dev cloud: tests/cloud/test_migration_devcloud.py.
"""

# ruff: noqa: F811  (fixtures imported from migration_fakes are parameters of the tests)
from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from jobs_fakes import ssh_private_key  # noqa: F401  (fixture)
from migration_fakes import API, EngineApp, engine_app, wave_body  # noqa: F401
from sqlalchemy import func, select

from controlplane.auth.models import AuditEntry
from controlplane.db import transaction
from controlplane.inventory.models import AgencySystem
from controlplane.waves.models import Migration, Wave

SYSTEMS = ("t-db", "t-app", "t-web")


def _make_wave(app: EngineApp, **overrides: Any) -> dict[str, Any]:
    return app.post("/waves", 201, json=wave_body(app.files, **overrides))


def _run_to_approval(app: EngineApp) -> dict[str, Any]:
    wave = _make_wave(app)
    app.post(f"/waves/{wave['id']}/run")
    return app.wait(wave["id"])


def _approve(app: EngineApp, wave: dict[str, Any], system: str) -> None:
    app.post(f"/migrations/{app.migration(wave, system)['id']}/approve")


def _jobs(app: EngineApp, playbook: str | None = None, host: str | None = None) -> list[Any]:
    return [j for j in app.runner.jobs if (playbook is None or j.playbook == playbook)
            and (host is None or host in j.inventory["all"]["hosts"])]


def test_a_wave_of_three_dependent_systems_runs_to_the_gate_then_cuts_over_dependencies_first(engine_app, clock):
    app = engine_app
    wave = _make_wave(app)
    assert wave["state"] == "pending"
    assert [m["system"] for m in wave["migrations"]] == ["t-db", "t-app", "t-web"]  # dependencies first
    assert app.migration(wave, "t-db")["steps"] == ["precheck", "provision", "configure", "move_data", "verify",
                                                    "cutover", "retire"]
    assert app.migration(wave, "t-app")["steps"] == ["precheck", "provision", "configure", "verify", "cutover",
                                                     "retire"]
    assert app.migration(wave, "t-app")["depends_on"] == ["t-db"]

    app.post(f"/waves/{wave['id']}/run")
    wave = app.wait(wave["id"])
    assert {m["system"]: m["state"] for m in wave["migrations"]} == dict.fromkeys(SYSTEMS, "awaiting_approval")
    assert wave["state"] == "awaiting_approval"
    assert sorted(app.cloud.created) == ["t-app-app-1", "t-db-db-1", "t-web-web-1"]
    # labelled for the inventory plugin's groups: per migration, wave and agency
    assert app.cloud.labels["t-db-db-1"] == {"cp_migration": app.migration(wave, "t-db")["id"],
                                             "cp_wave": str(wave["id"]), "cp_agency": "MOIS"}
    db = app.migration(wave, "t-db")
    assert db["steps_done"] == ["precheck", "provision", "configure", "move_data", "verify"]
    assert set(db["servers"]) == {"t-db-db-1"}
    runs = [(r["step"], r["state"]) for r in db["step_runs"]]
    assert runs == [(s, "succeeded") for s in db["steps_done"]]
    # configure applies the roles without the data; move_data loads it on the db server; verify runs the checks
    configure = _jobs(app, "migrate_system.yml", "t-db-db-1")[0]
    assert configure.extravars["migration_steps"] == ["base", "postgresql"]
    move = _jobs(app, "migrate_system.yml", "t-db-db-1")[1]
    assert move.extravars["migration_steps"] == ["data_migration"]
    assert move.extravars["data_migration_dump_src"].endswith("db.sql")
    assert move.secrets == {"postgresql_db_owner_password": move.secrets["postgresql_db_owner_password"]}
    assert len(move.secrets["postgresql_db_owner_password"]) >= 24
    assert {r.roles for r in app.checks.requests} >= {("base", "postgresql", "data_migration")}

    # t-app's cutover waits for t-db's even when approved first: outside the queue, its workflow ended
    _approve(app, wave, "t-app")
    wave = app.until(wave["id"], {"t-app": "waiting"})
    waiting = app.migration(wave, "t-app")
    assert waiting["waiting_for"] == "cutover waits for t-db to be cut over first" and waiting["step"] == "cutover"
    _approve(app, wave, "t-db")
    _approve(app, wave, "t-web")
    wave = app.until(wave["id"], dict.fromkeys(SYSTEMS, "cut_over"))
    # cut over: the legacy side is kept for the soak (24 h by default), then each is retired by itself
    soaking = app.migration(wave, "t-db")
    assert soaking["steps_done"][-1] == "cutover" and soaking["step"] == "retire", soaking
    assert soaking["soak_until"].startswith((clock.now() + timedelta(hours=24)).isoformat()[:16])
    assert "the legacy side is kept (soak) until" in soaking["waiting_for"]
    assert wave["state"] == "cut_over"
    clock.advance(timedelta(hours=24, seconds=1))
    app.ops = app.login("ops-next-day", "operator")  # yesterday's token has expired
    wave = app.until(wave["id"], dict.fromkeys(SYSTEMS, "succeeded"))
    assert wave["state"] == "succeeded"
    events = app.client.get(f"{API}/waves/{wave['id']}/events", headers=app.ops).json()
    cutover_done = [e["system"] for e in events if e["step"] == "cutover" and e["state"] == "succeeded"]
    assert cutover_done.index("t-db") < cutover_done.index("t-app")
    # the front of t-app now forwards to the new app server's Tomcat
    front = _jobs(app, "migrate_system.yml", "front-app")[0]
    address = app.migration(wave, "t-app")["servers"]["t-app-app-1"]["address"]
    assert front.inventory["all"]["hosts"]["front-app"]["nginx_upstreams"] == [f"{address}:8080"]
    assert front.extravars["migration_steps"] == ["nginx"]
    with transaction(app.sessions) as session:
        statuses = dict(session.execute(select(AgencySystem.code, AgencySystem.status)).all())
        actions = [a.action for a in session.scalars(select(AuditEntry).where(AuditEntry.entity_type.in_(
            ["wave", "migration"])))]
    assert statuses == dict.fromkeys(SYSTEMS, "migrated")
    assert actions.count("approve") == 3 and "create" in actions and "run" in actions
    metrics = app.client.get("/metrics").text
    assert 'controlplane_migrations{state="succeeded"} 3.0' in metrics
    assert 'controlplane_waves{state="succeeded"} 1.0' in metrics
    assert 'controlplane_waves{state="running"} 0.0' in metrics
    assert 'controlplane_migration_step_duration_seconds_count{outcome="succeeded",step="configure"} 3.0' in metrics


def test_a_configure_failure_stops_that_system_only_and_a_retry_finishes_it(engine_app):
    app = engine_app
    app.runner.fail_host = "t-app-app-1"
    wave = _run_to_approval(app)
    failed = app.migration(wave, "t-app")
    assert failed["state"] == "failed" and failed["step"] == "configure"
    assert "configure t-app-app-1" in failed["error"] and "Install packages" in failed["error"]
    assert failed["steps_done"] == ["precheck", "provision"]
    assert app.migration(wave, "t-db")["state"] == app.migration(wave, "t-web")["state"] == "awaiting_approval"
    assert wave["state"] == "failed"

    before = len(_jobs(app))
    app.runner.fail_host = None  # the cause is fixed
    accepted = app.post(f"/migrations/{failed['id']}/retry")
    assert accepted["state"] == "queued" and "retried from configure" in accepted["message"]
    wave = app.wait(wave["id"])
    retried = app.migration(wave, "t-app")
    assert retried["state"] == "awaiting_approval" and retried["attempt"] == 2
    assert [j.playbook for j in _jobs(app)[before:]] == ["migrate_system.yml", "verify.yml"]  # configure, verify
    assert app.cloud.created.count("t-app-app-1") == 1  # provision was not repeated
    runs = [(r["step"], r["state"]) for r in retried["step_runs"]]
    assert runs == [("precheck", "succeeded"), ("provision", "succeeded"), ("configure", "failed"),
                    ("configure", "succeeded"), ("verify", "succeeded")]


def test_retry_from_an_earlier_step_and_bad_retries(engine_app):
    app = engine_app
    app.checks.failing_roles = {"data_migration"}  # t-db's data does not match its manifest
    wave = _run_to_approval(app)
    db = app.migration(wave, "t-db")
    assert db["state"] == "failed" and db["step"] == "verify", db
    bad = app.client.post(f"{API}/migrations/{db['id']}/retry", headers=app.ops, json={"from_step": "cutover"})
    assert bad.status_code == 422 and bad.json()["field"] == "from_step"
    assert "cutover cannot run before verify is done" in bad.json()["message"]
    bad = app.client.post(f"{API}/migrations/{db['id']}/retry", headers=app.ops, json={"from_step": "nope"})
    assert bad.status_code == 422
    refused = app.client.post(f"{API}/migrations/{app.migration(wave, 't-web')['id']}/retry", headers=app.ops)
    assert refused.status_code == 409 and "cannot retry a migration that is awaiting approval" in refused.text
    assert "data_migration" in db["error"]
    app.checks.failing_roles = set()
    app.post(f"/migrations/{db['id']}/retry", json={"from_step": "configure"})
    wave = app.wait(wave["id"])
    assert app.migration(wave, "t-db")["state"] == "awaiting_approval"
    assert [r["step"] for r in app.migration(wave, "t-db")["step_runs"]][-3:] == ["configure", "move_data", "verify"]


def test_rollback_removes_every_server_and_proves_nothing_is_left(engine_app):
    app = engine_app
    wave = _run_to_approval(app)
    _approve(app, wave, "t-db")
    wave = app.wait(wave["id"])
    app_mig = app.migration(wave, "t-app")
    accepted = app.post(f"/migrations/{app_mig['id']}/rollback")
    assert accepted["message"] == "rollback of t-app: provision"
    wave = app.wait(wave["id"])
    rolled = app.migration(wave, "t-app")
    assert rolled["state"] == "rolled_back" and rolled["servers"] == {} and rolled["steps_done"] == []
    assert rolled["rollback"]["state"] == "succeeded"
    assert rolled["rollback"]["leftovers"] == {"servers": [], "ports": [], "volumes": []}
    assert not [s for s in app.cloud.servers if s.name.startswith("t-app")]
    assert not [p for p in app.cloud.ports if p["device_id"] not in {s.id for s in app.cloud.servers}]
    assert app.migration(wave, "t-db")["state"] == "cut_over"  # the others are untouched


def test_a_cut_over_system_rolls_back_during_its_soak_front_first_and_a_retired_one_cannot(engine_app):
    app = engine_app
    wave = _run_to_approval(app)
    _approve(app, wave, "t-db")
    _approve(app, wave, "t-web")
    wave = app.until(wave["id"], {"t-db": "cut_over", "t-web": "cut_over"})
    web = app.migration(wave, "t-web")
    assert web["steps_done"][-1] == "cutover" and "retire" not in web["steps_done"]
    accepted = app.post(f"/migrations/{web['id']}/rollback")
    assert accepted["message"] == "rollback of t-web: cutover -> provision"
    wave = app.wait(wave["id"])
    assert app.migration(wave, "t-web")["state"] == "rolled_back"
    front = _jobs(app, "migrate_system.yml", "front-web")
    address = web["servers"]["t-web-web-1"]["address"]
    assert [j.inventory["all"]["hosts"]["front-web"]["nginx_upstreams"] for j in front] == [
        [f"{address}:80"], ["10.78.0.8:80"]]
    # an operator retires t-db before its soak ends; once retired there is nothing to roll back to
    db = app.migration(wave, "t-db")
    assert "retire of t-db approved by ops1 before its soak ended" in app.post(f"/migrations/{db['id']}/approve")[
        "message"]
    wave = app.until(wave["id"], {"t-db": "succeeded"})
    refused = app.client.post(f"{API}/migrations/{db['id']}/rollback", headers=app.ops)
    assert refused.status_code == 409 and "succeeded" in refused.json()["message"]


def test_a_rollback_that_leaves_ports_behind_says_so(engine_app):
    app = engine_app
    app.cloud.keep_ports = True
    wave = _run_to_approval(app)
    mig = app.migration(wave, "t-web")
    app.post(f"/migrations/{mig['id']}/rollback")
    wave = app.wait(wave["id"])
    broken = app.migration(wave, "t-web")
    assert broken["state"] == "rollback_failed"
    assert "left in the cloud: 1 ports" in broken["error"]
    assert len(broken["rollback"]["leftovers"]["ports"]) == 1
    app.cloud.keep_ports = False
    app.cloud.ports = [p for p in app.cloud.ports if p["device_id"] in {s.id for s in app.cloud.servers}]
    app.post(f"/migrations/{mig['id']}/rollback")
    wave = app.wait(wave["id"])
    assert app.migration(wave, "t-web")["state"] == "rolled_back"


def test_pause_resume_and_cancel(engine_app):
    app = engine_app
    app.runner.gate = threading.Event()  # jobs wait here
    wave = _make_wave(app)
    app.post(f"/waves/{wave['id']}/run")
    assert app.runner.started.wait(10)
    paused = app.post(f"/waves/{wave['id']}/pause")
    assert {m["control"] for m in paused["migrations"]} == {"pause"}
    app.runner.gate.set()
    wave = app.wait(wave["id"])
    assert {m["state"] for m in wave["migrations"]} == {"paused"}
    assert wave["state"] == "paused"
    done = {m["system"]: m["steps_done"] for m in wave["migrations"]}
    assert all(d and d[-1] in ("configure", "provision", "precheck") for d in done.values()), done

    app.runner.gate = threading.Event()
    app.runner.started.clear()
    app.post(f"/migrations/{app.migration(wave, 't-db')['id']}/resume")
    assert app.runner.started.wait(10)
    app.post(f"/migrations/{app.migration(wave, 't-db')['id']}/cancel")
    wave = app.wait(wave["id"])
    db = app.migration(wave, "t-db")
    assert db["state"] == "canceled", db
    assert db["step_runs"][-1]["state"] == "canceled"
    app.runner.gate.set()
    refused = app.client.post(f"{API}/migrations/{db['id']}/pause", headers=app.ops)
    assert refused.status_code == 409 and refused.json()["code"] == "control_refused"
    cancel_pending = app.post(f"/migrations/{app.migration(wave, 't-web')['id']}/cancel")
    assert cancel_pending["state"] == "canceled"


@pytest.mark.parametrize("engine_on", [False])  # refused before any work is handed over
@pytest.mark.parametrize(("change", "field", "text"), [
    ({"systems": ["t-app"]}, "systems", "depends on t-db, which is neither migrated nor in the plan"),
    ({"systems": ["t-db", "nope"]}, "systems", "nope is not in the inventory"),
    ({"credential": "missing"}, "credential", "missing"),
])
def test_bad_waves_are_refused_and_nothing_is_made(engine_app, change, field, text):
    app = engine_app
    response = app.client.post(f"{API}/waves", headers=app.ops, json=wave_body(app.files, **change))
    assert response.status_code in (404, 422), response.text
    assert response.json()["field"] == field and text in response.text
    with transaction(app.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Wave)) == 0
        assert session.scalar(select(func.count()).select_from(Migration)) == 0


@pytest.mark.parametrize("engine_on", [False])  # waves made and canceled, never run
def test_a_system_is_held_by_one_wave_at_a_time(engine_app):
    app = engine_app
    first = _make_wave(app)
    inputs = wave_body(app.files)["inputs"]
    second = {"name": "wave-2", "systems": ["t-web", "t-db"], "credential": "hosts-root",
              "inputs": {code: inputs[code] for code in ("t-web", "t-db")}}
    refused = app.client.post(f"{API}/waves", headers=app.ops, json=second)
    assert refused.status_code == 409, refused.text
    body = refused.json()
    assert body["code"] == "conflict" and body["field"] == "systems"
    assert "held by wave 'wave-1' (pending)" in body["message"], body
    assert {(d["system"], d["wave"]) for d in body["details"]} == {("t-web", "wave-1"), ("t-db", "wave-1")}
    with transaction(app.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Wave)) == 1
        assert session.scalar(select(func.count()).select_from(Migration)) == 3

    # Canceled before it made anything, the first wave lets its systems go; one that made servers keeps them.
    app.post(f"/waves/{first['id']}/cancel")
    with transaction(app.sessions) as session:
        web = session.scalars(select(Migration).join(AgencySystem).where(AgencySystem.code == "t-web")).one()
        assert web.state == "canceled"
        web.resources = {"t-web-web-1": {"id": "server-1", "address": "10.78.0.40"}}
    still = app.client.post(f"{API}/waves", headers=app.ops, json=second)
    assert still.status_code == 409 and "t-web is held by wave 'wave-1' (canceled)" in still.json()["message"]
    assert [d["system"] for d in still.json()["details"]] == ["t-web"]
    with transaction(app.sessions) as session:
        session.scalars(select(Migration).join(AgencySystem).where(AgencySystem.code == "t-web")).one() \
            .state = "rolled_back"
    assert app.post("/waves", 201, json=second)["name"] == "wave-2"


def test_precheck_keeps_the_quota_for_the_agencys_migrations_ahead(engine_app):
    """Two waves of one agency that fit its quota apart but not together: the later fails at precheck with the
    figures, before any server; once the earlier wave is no longer under way, a retry has the room."""
    app = engine_app
    first = _make_wave(app)
    with transaction(app.sessions) as session:
        web = session.scalars(select(AgencySystem).where(AgencySystem.code == "t-web")).one()
        session.add(AgencySystem(code="t-solo", agency_id=web.agency_id, name_ko="t-solo", name_en="t-solo",
                                 criticality=web.criticality, vcpus=web.vcpus, ram_mb=web.ram_mb, disk_gb=web.disk_gb,
                                 data_gb=0, components=web.components, depends_on=[], status="legacy", notes="",
                                 created_at=web.created_at, updated_at=web.updated_at))
    with transaction(app.sessions) as session:  # the first wave waits for a place in the agency's queue
        ahead = list(session.scalars(select(Migration).where(Migration.wave_id == first["id"])))
        for migration in ahead:
            migration.state = "queued"
        kept = sum(len(m.plan["servers"]) for m in ahead)
    project = app.cloud.projects["agency-mois"]
    project["quotas"] = dataclasses.replace(project["quotas"], instances=kept)
    inputs = wave_body(app.files)["inputs"]
    second = app.post("/waves", 201, json={"name": "wave-2", "systems": ["t-solo"], "credential": "hosts-root",
                                           "inputs": {"t-solo": inputs["t-web"]}})
    app.post(f"/waves/{second['id']}/run")
    solo = app.migration(app.wait(second["id"]), "t-solo")
    assert (solo["state"], solo["step"]) == ("failed", "precheck"), solo
    assert f"instances: 0 in use + {kept} kept for the agency's migrations ahead + 1 needed > {kept}" \
        in solo["error"], solo["error"]
    assert app.cloud.created == []

    with transaction(app.sessions) as session:
        for migration in session.scalars(select(Migration).where(Migration.wave_id == first["id"])):
            migration.state = "canceled"
    app.post(f"/migrations/{solo['id']}/retry")
    solo = app.migration(app.wait(second["id"]), "t-solo")
    assert solo["state"] == "awaiting_approval", solo
    assert len(app.cloud.created) == 1


def _app_inputs(app: EngineApp, **change: Any) -> dict[str, Any]:
    inputs = wave_body(app.files)["inputs"]
    return {"inputs": {**inputs, "t-app": {**inputs["t-app"], **change}}}


@pytest.mark.parametrize("engine_on", [False])  # refused before any work is handed over
@pytest.mark.parametrize(("change", "field", "text"), [
    # The rules of jobs hold for the variables a wave gives its jobs.
    ({"variables": {"ansible_connection": "local"}}, "inputs.t-app.variables.ansible_connection",
     "set by the control plane"),
    ({"variables": {"migration_steps": ["nginx"]}}, "inputs.t-app.variables.migration_steps",
     "set by the control plane"),
    ({"variables": {"tomcat_admin_password": "x"}}, "inputs.t-app.variables.tomcat_admin_password",
     "looks like a secret"),
    ({"front": {"name": "front-app", "address": "10.78.0.5",
                "vars": {"ansible_ssh_common_args": "-o ProxyCommand=id"}}},
     "inputs.t-app.front.vars.ansible_ssh_common_args", "set by the control plane"),
    # Files come from the artifacts directory only, whatever input names them.
    ({"artifact": {"kind": "war", "name": "minwon", "src": "/etc/shadow", "checksum": "sha256:" + "0" * 64}},
     "inputs.t-app.artifact.src", "outside the artifacts directory"),
    ({"artifact": {"kind": "war", "name": "minwon", "src": "../../../../etc/passwd",
                   "checksum": "sha256:" + "0" * 64}}, "inputs.t-app.artifact.src", "outside the artifacts directory"),
    ({"variables": {"app_deploy_artifact_src": "/etc/shadow"}}, "inputs.t-app.variables.app_deploy_artifact_src",
     "outside the artifacts directory"),
    ({"front": {"name": "front-app", "address": "10.78.0.5", "vars": {"nginx_cert_src": "/etc/ssl/private/key"}}},
     "inputs.t-app.front.vars.nginx_cert_src", "outside the artifacts directory"),
])
def test_wave_inputs_pass_the_rules_of_jobs(engine_app, change, field, text):
    app = engine_app
    response = app.client.post(f"{API}/waves", headers=app.ops, json=wave_body(app.files, **_app_inputs(app, **change)))
    assert response.status_code == 422, response.text
    assert field in [d["field"] for d in response.json()["details"]], response.json()
    assert text in response.text
    with transaction(app.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Wave)) == 0


@pytest.mark.parametrize("engine_on", [False])  # refused before any work is handed over
@pytest.mark.parametrize("key", ["dump_src", "manifest_src", "schema_src"])
def test_a_wave_cannot_send_the_control_planes_own_files(engine_app, key):
    app = engine_app
    database = app.files.parent / "controlplane.db"  # the product's own database, beside the artifacts directory
    database.write_bytes(b"SQLite format 3")
    inputs = wave_body(app.files)["inputs"]
    data = {**inputs["t-db"]["data"], key: str(database)}
    response = app.client.post(f"{API}/waves", headers=app.ops,
                               json=wave_body(app.files, inputs={**inputs, "t-db": {"data": data}}))
    assert response.status_code == 422, response.text
    assert f"inputs.t-db.data.{key}" in [d["field"] for d in response.json()["details"]]


def test_a_dependency_cycle_an_unknown_component_and_a_wave_over_quota_are_refused(engine_app):
    app = engine_app
    with transaction(app.sessions) as session:
        rows = {s.code: s for s in session.scalars(select(AgencySystem))}
        rows["t-db"].depends_on = ["t-web"]
    cycle = app.client.post(f"{API}/waves", headers=app.ops, json=wave_body(app.files))
    assert cycle.status_code == 422 and "cycle" in cycle.json()["message"], cycle.text
    assert "t-db -> t-web -> t-db" in cycle.json()["message"]
    with transaction(app.sessions) as session:
        rows = {s.code: s for s in session.scalars(select(AgencySystem))}
        rows["t-db"].depends_on = []
        rows["t-web"].components = [*rows["t-web"].components,
                                    {"kind": "web", "vendor": "Inswave", "product": "WebSquare", "version": "5"}]
        rows["t-app"].vcpus = 64
    refused = app.client.post(f"{API}/waves", headers=app.ops, json=wave_body(app.files))
    assert refused.status_code == 422, refused.text
    codes = {d["code"] for d in refused.json()["details"]}
    assert "unknown_component" in codes
    assert any("WebSquare" in d["message"] for d in refused.json()["details"])
    missing = app.client.post(f"{API}/waves", headers=app.ops,
                              json=wave_body(app.files, inputs={}, systems=["t-db"]))
    assert missing.status_code == 422 and missing.json()["field"] == "inputs.t-db.data"
    with transaction(app.sessions) as session:
        assert session.scalar(select(func.count()).select_from(Wave)) == 0


def test_over_quota_is_refused(engine_app):
    app = engine_app
    response = app.client.put(f"{API}/cloud/agencies/MOIS/onboarding", headers=app.ops, json={
        "quotas": {"instances": 2, "cores": 10, "ram_mb": 20480, "volumes": 4},
        "ingress": [], "public_key": None})
    assert response.status_code == 200, response.text
    assert app.client.post(f"{API}/cloud/agencies/MOIS/onboarding/apply", headers=app.ops).status_code == 202
    assert app.client.app.state.ctx.workflows.wait_idle(timeout=15)
    refused = app.client.post(f"{API}/waves", headers=app.ops, json=wave_body(app.files))
    assert refused.status_code == 422, refused.text
    assert any(d["code"] == "over_quota" for d in refused.json()["details"]), refused.json()


def test_who_may_read_and_control_migrations(engine_app):
    app = engine_app
    wave = _make_wave(app)
    auditor = app.login("aud", "auditor")
    ministry = app.login("moef", "ministry", "MOEF")
    own = app.login("mois", "ministry", "MOIS")
    secretariat = app.login("sec", "secretariat")
    assert app.client.get(f"{API}/waves/{wave['id']}", headers=auditor).status_code == 200
    assert app.client.get(f"{API}/waves/{wave['id']}", headers=own).status_code == 200
    assert app.client.get(f"{API}/waves/{wave['id']}", headers=ministry).status_code == 404
    assert app.client.get(f"{API}/waves", headers=ministry).json() == []
    assert app.client.get(f"{API}/waves", headers=secretariat).status_code == 403
    assert app.client.get(f"{API}/waves").status_code == 401
    assert app.client.post(f"{API}/waves/{wave['id']}/run", headers=auditor).status_code == 403
    assert app.client.post(f"{API}/waves/{wave['id']}/run", headers=own).status_code == 403
    mig = app.migration(wave, "t-db")["id"]
    assert app.client.post(f"{API}/migrations/{mig}/approve", headers=own).status_code == 403
    body = app.client.get(f"{API}/waves/{wave['id']}", headers=app.ops).text
    secret_holder = app.migration(wave, "t-db")
    assert "secrets" not in secret_holder and "password" not in body


def test_a_rollback_after_cutover_dumps_the_new_database_once_confirmed(engine_app):
    app = engine_app
    wave = _run_to_approval(app)
    db = app.migration(wave, "t-db")
    app.post(f"/migrations/{db['id']}/approve")
    wave = app.until(wave["id"], {"t-db": "cut_over"})
    refused = app.client.post(f"{API}/migrations/{db['id']}/rollback", headers=app.ops)
    assert refused.status_code == 409 and refused.json()["field"] == "confirm_writes_since_cutover"
    assert "its users may have written to its new database t_db since" in refused.json()["message"]
    assert app.migration(app.wait(wave["id"]), "t-db")["state"] == "cut_over"  # nothing was done

    # the dump does not arrive: the rollback stops before anything is deleted
    app.post(f"/migrations/{db['id']}/rollback", json={"confirm_writes_since_cutover": True})
    wave = app.wait(wave["id"])
    broken = app.migration(wave, "t-db")
    assert broken["state"] == "rollback_failed" and "the dump of t_db did not arrive" in broken["error"], broken
    assert "t-db-db-1" in {s.name for s in app.cloud.servers}

    def dump(job: Any) -> None:  # the job brings the database and its measure into the directory it was given
        where = job.extravars.get("cp_fetch_dir")
        if job.extravars.get("data_migration_action") == "dump" and where:
            (Path(where) / "t_db.sql").write_text("-- PostgreSQL database dump\n")
            (Path(where) / "t_db.changes.json").write_text(json.dumps(
                {"differences": ["public.applications: 305 rows, the source had 300"]}))

    app.runner.on_run = dump
    app.post(f"/migrations/{db['id']}/rollback", json={"confirm_writes_since_cutover": True})
    wave = app.wait(wave["id"])
    rolled = app.migration(wave, "t-db")
    assert rolled["state"] == "rolled_back", rolled
    (kept,) = rolled["rollback"]["dumps"]
    assert kept["database"] == "t_db" and kept["sha256"] == "sha256:" + hashlib.sha256(
        b"-- PostgreSQL database dump\n").hexdigest()
    assert kept["written_since_cutover"] == ["public.applications: 305 rows, the source had 300"]
    assert Path(kept["path"]).is_relative_to(app.files / "rollbacks")
    (job,) = [j for j in app.runner.jobs if j.extravars.get("data_migration_action") == "dump"][-1:]
    assert job.extravars["migration_steps"] == ["data_migration"] and "t-db-db-1" in job.inventory["all"]["hosts"]
    assert "t-db-db-1" not in {s.name for s in app.cloud.servers}  # deleted after the dump


def test_a_job_request_cannot_choose_where_files_are_fetched(engine_app):
    app = engine_app
    response = app.client.post(f"{API}/jobs", headers=app.ops, json={
        "playbook": "migrate_system.yml", "credential": "hosts-root",
        "hosts": [{"name": "h1", "address": "10.78.0.5", "groups": ["data_migration"]}],
        "extravars": {"migration_system": "x", "cp_fetch_dir": "/etc"}})
    assert response.status_code == 422 and response.json()["field"] == "extravars.cp_fetch_dir"
    assert "set by the control plane" in response.json()["message"]
