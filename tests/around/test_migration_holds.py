"""Migrations held outside the queue, on the engine around fake ports: an approved cutover waits for its
dependencies (blocked while one has stopped, without holding a slot of its agency's queue or writing while nothing
changes), for its maintenance window (unless forced, with a reason that is audited), and a cut-over system soaks
before it is retired; a step the cloud does not answer waits with backoff. The agency runs two migrations at once
here, as in the deadlock these tests were made for.
"""

# ruff: noqa: F811  (fixtures imported from migration_fakes are parameters of the tests)
from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import pytest
from jobs_fakes import ssh_private_key  # noqa: F401  (fixture)
from migration_fakes import API, EngineApp, engine_app, wave_body  # noqa: F401
from sqlalchemy import func, select, update

from controlplane.auth.models import AuditEntry
from controlplane.cloud.errors import CloudUnavailable
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.inventory.models import AgencySystem
from controlplane.waves.models import MigrationEvent


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"migration_agency_concurrency": 2})


def _run_to_approval(app: EngineApp, **overrides: Any) -> dict[str, Any]:
    wave = app.post("/waves", 201, json=wave_body(app.files, **overrides))
    app.post(f"/waves/{wave['id']}/run")
    return app.wait(wave["id"])


def _ended(app: EngineApp, migration: dict[str, Any]) -> None:
    """The workflow of the migration's attempt has ended (it ends right after recording the hold)."""
    deadline = time.monotonic() + 10
    while app.engine.status(f"migration-{migration['id']}-{migration['attempt']}") != "SUCCESS":
        assert time.monotonic() < deadline, "the held migration's workflow still runs"
        time.sleep(0.05)


def _events(app: EngineApp) -> int:
    with transaction(app.sessions) as session:
        return int(session.scalar(select(func.count()).select_from(MigrationEvent)) or 0)


def test_dependents_of_a_failed_system_are_blocked_without_holding_the_queue_and_go_on_once_it_is_cut_over(
        engine_app):
    app = engine_app
    app.checks.failing_roles = {"data_migration"}  # t-db's data does not match its manifest
    wave = _run_to_approval(app, soak_hours=0)
    db = app.migration(wave, "t-db")
    assert db["state"] == "failed" and db["step"] == "verify"
    for system in ("t-app", "t-web"):  # two approved dependents: as many as the agency may run at once
        app.post(f"/migrations/{app.migration(wave, system)['id']}/approve")
    wave = app.until(wave["id"], {"t-app": "blocked", "t-web": "blocked"})
    blocked = app.migration(wave, "t-app")
    assert blocked["waiting_for"] == "cutover blocked: t-db failed; it goes on once it is cut over"
    assert blocked["step"] == "cutover" and wave["state"] == "failed"
    _ended(app, blocked)  # its workflow holds no slot of the agency's queue
    written = _events(app)
    time.sleep(1.0)  # five turns of the waker
    assert _events(app) == written  # nothing is written while nothing changes

    app.checks.failing_roles = set()
    app.post(f"/migrations/{db['id']}/retry")  # the agency's queue has room for it
    wave = app.until(wave["id"], {"t-db": "awaiting_approval", "t-app": "waiting", "t-web": "waiting"})
    assert app.migration(wave, "t-web")["waiting_for"] == "cutover waits for t-db to be cut over first"
    app.post(f"/migrations/{db['id']}/approve")
    wave = app.until(wave["id"], {"t-db": "succeeded", "t-app": "succeeded", "t-web": "succeeded"})
    events = app.client.get(f"{API}/waves/{wave['id']}/events", headers=app.ops).json()
    cutovers = [e["system"] for e in events if e["step"] == "cutover" and e["state"] == "succeeded"]
    assert cutovers[0] == "t-db" and sorted(cutovers[1:]) == ["t-app", "t-web"]


def test_a_dependency_rolled_back_blocks_its_waiting_dependents(engine_app):
    app = engine_app
    wave = _run_to_approval(app)
    app.post(f"/migrations/{app.migration(wave, 't-app')['id']}/approve")
    app.until(wave["id"], {"t-app": "waiting"})
    app.post(f"/migrations/{app.migration(wave, 't-db')['id']}/rollback")
    wave = app.until(wave["id"], {"t-db": "rolled_back", "t-app": "blocked"})
    deadline = time.monotonic() + 10  # blocked since the rollback began; the waker then says how it ended
    while not app.migration(wave, "t-app")["waiting_for"].startswith("cutover blocked: t-db was rolled back"):
        assert time.monotonic() < deadline, app.migration(wave, "t-app")["waiting_for"]
        time.sleep(0.05)
        wave = app.client.get(f"{API}/waves/{wave['id']}", headers=app.ops).json()


def _window(app: EngineApp, system: str, window: str) -> None:
    with transaction(app.sessions) as session:
        session.execute(update(AgencySystem).where(AgencySystem.code == system).values(maintenance_window=window))


def test_an_approved_cutover_waits_for_its_window_unless_forced_with_a_reason(engine_app, clock):
    app = engine_app
    # The clock says Tuesday 12:00 in Seoul: t-app's window opens at 14:00 today, t-web's next Sunday.
    _window(app, "t-app", "Tue 14:00-16:00")
    _window(app, "t-web", "Sun 02:00-04:00")
    wave = _run_to_approval(app, soak_hours=0)
    for system in ("t-db", "t-app", "t-web"):
        app.post(f"/migrations/{app.migration(wave, system)['id']}/approve")
    wave = app.until(wave["id"], {"t-db": "succeeded", "t-app": "waiting", "t-web": "waiting"})
    assert app.migration(wave, "t-app")["waiting_for"] == (
        "cutover waits for its maintenance window Tue 14:00-16:00: it opens 2014-07-01 14:00 (KST)")
    assert "it opens 2014-07-06 02:00 (KST)" in app.migration(wave, "t-web")["waiting_for"]
    assert "t-app-app-1" not in str([j.inventory for j in app.runner.jobs if j.extravars.get("migration_steps") ==
                                     ["nginx"]])  # its front was not switched

    # approving again does not skip the window; forcing it needs a reason, which the audit keeps
    web = app.migration(wave, "t-web")
    again = app.client.post(f"{API}/migrations/{web['id']}/approve", headers=app.ops)
    assert again.status_code == 409 and again.json()["field"] == "force_window"
    assert "approve with force_window and the reason" in again.json()["message"]
    short = app.client.post(f"{API}/migrations/{web['id']}/approve", headers=app.ops, json={"force_window": ""})
    assert short.status_code == 422
    forced = app.post(f"/migrations/{web['id']}/approve",
                      json={"force_window": "the legacy portal's certificate expires on Saturday"})
    assert "outside its maintenance window if need be" in forced["message"]
    wave = app.until(wave["id"], {"t-web": "succeeded", "t-app": "waiting"})
    assert app.migration(wave, "t-web")["window_forced"] == "the legacy portal's certificate expires on Saturday"
    with transaction(app.sessions) as session:
        audited = [a.after for a in session.scalars(select(AuditEntry).where(AuditEntry.action == "approve"))]
    assert any(a.get("force_window") == "the legacy portal's certificate expires on Saturday" for a in audited)

    clock.advance(timedelta(hours=2))  # 14:00 in Seoul: the window opens
    wave = app.until(wave["id"], {"t-app": "succeeded"})


def test_a_cut_over_system_is_retired_when_its_waves_soak_ends(engine_app, clock):
    app = engine_app
    wave = _run_to_approval(app, soak_hours=0.5)
    assert wave["soak_hours"] == 0.5
    app.post(f"/migrations/{app.migration(wave, 't-db')['id']}/approve")
    wave = app.until(wave["id"], {"t-db": "cut_over"})
    db = app.migration(wave, "t-db")
    assert db["soak_until"].startswith("2014-07-01T03:30")
    assert db["waiting_for"] == ("cut over: the legacy side is kept (soak) until 2014-07-01 12:30 (KST), then "
                                 "retired; approve to retire it earlier")
    with transaction(app.sessions) as session:
        assert session.scalar(select(AgencySystem.status).where(AgencySystem.code == "t-db")) == "legacy"
    clock.advance(timedelta(minutes=29))
    time.sleep(0.5)
    assert app.client.get(f"{API}/migrations/{db['id']}", headers=app.ops).json()["state"] == "cut_over"
    clock.advance(timedelta(minutes=1))
    app.until(wave["id"], {"t-db": "succeeded"})
    with transaction(app.sessions) as session:
        assert session.scalar(select(AgencySystem.status).where(AgencySystem.code == "t-db")) == "migrated"


def test_soak_and_force_are_checked(engine_app):
    app = engine_app
    for bad in (-1, 24 * 91, "a day"):
        response = app.client.post(f"{API}/waves", headers=app.ops, json=wave_body(app.files, soak_hours=bad))
        assert response.status_code == 422 and "soak_hours" in response.text
    wave = _run_to_approval(app)
    db = app.migration(wave, "t-db")
    stray = app.client.post(f"{API}/migrations/{db['id']}/approve", headers=app.ops, json={"force": True})
    assert stray.status_code == 422
    web = app.migration(wave, "t-web")
    refused = app.client.post(f"{API}/migrations/{web['id']}/cancel", headers=app.ops)
    assert refused.status_code == 202  # awaiting approval: cancel is accepted
    blocked = app.client.post(f"{API}/migrations/{web['id']}/approve", headers=app.ops)
    assert blocked.status_code == 409 and "cannot approve a migration that is canceled" in blocked.text


def test_a_cloud_outage_is_waited_out_without_holding_the_queue(engine_app, clock):
    app = engine_app
    app.cloud.fail_create = CloudUnavailable("create server t-db-db-1: the cloud did not answer (ConnectFailure)")
    body = wave_body(app.files, systems=["t-db"])
    wave = app.post("/waves", 201, json={**body, "inputs": {"t-db": body["inputs"]["t-db"]}})
    app.post(f"/waves/{wave['id']}/run")
    wave = app.until(wave["id"], {"t-db": "waiting"})
    db = app.migration(wave, "t-db")
    assert db["step"] == "provision" and db["error"] == ""
    assert db["waiting_for"] == ("waiting for the cloud: create server t-db-db-1: the cloud did not answer "
                                 "(ConnectFailure); it tries again at 2014-07-01 12:00:15 (KST)")
    assert [(r["step"], r["state"]) for r in db["step_runs"]] == [("precheck", "succeeded"),
                                                                  ("provision", "cloud_unreachable")]
    _ended(app, db)
    clock.advance(timedelta(seconds=15))  # still down: the next try is twice as far
    wave = app.until(wave["id"], {"t-db": "waiting"})
    deadline = time.monotonic() + 10
    while "12:00:45" not in (db := app.migration(wave, "t-db"))["waiting_for"]:
        assert time.monotonic() < deadline, db["waiting_for"]
        time.sleep(0.05)
        wave = app.client.get(f"{API}/waves/{wave['id']}", headers=app.ops).json()
    app.cloud.fail_create = None  # the cloud answers again: the migration goes on by itself
    clock.advance(timedelta(seconds=30))
    wave = app.until(wave["id"], {"t-db": "awaiting_approval"})
    db = app.migration(wave, "t-db")
    assert db["waiting_for"] == "" and app.cloud.created == ["t-db-db-1"]
    assert [r["state"] for r in db["step_runs"] if r["step"] == "provision"] == [
        "cloud_unreachable", "cloud_unreachable", "succeeded"]
