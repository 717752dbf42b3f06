"""A wave of 20 systems: the engine's makespan against the same steps run one system at a time (the baseline) in
the same run, and against the slowest single system. See bench/README.md.

The ports are stand-ins whose latencies are the dev cloud's measured ones scaled down (--scale): a server takes
`provision` seconds to boot, a playbook job `configure` / `move_data` / `verify` / `cutover` seconds. What is
measured is the engine: DBOS workflows, the agency and cloud queues, the database writes of every step, the
approval gate (approved as soon as it is reached, by a thread standing in for the operator).

    .venv/bin/python bench/migration_wave.py [--systems 20] [--agencies 5] [--scale 1.0] [--cloud-concurrency 10]
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "tests" / "around")]

from fastapi.testclient import TestClient  # noqa: E402
from jobs_fakes import FakeChecks, FakeRunner  # noqa: E402
from migration_fakes import MigrationCloud  # noqa: E402
from sqlalchemy import select, update  # noqa: E402
from test_cloud_api_layer import SPEC  # noqa: E402

from controlplane.app import create_app  # noqa: E402
from controlplane.auth import service as auth_service  # noqa: E402
from controlplane.auth.models import Agency  # noqa: E402
from controlplane.auth.roles import Role  # noqa: E402
from controlplane.auth.schemas import AgencyCreate, AgencyKind, UserCreate  # noqa: E402
from controlplane.automation.domain import PlaybookJob, RunResult  # noqa: E402
from controlplane.clock import Clock  # noqa: E402
from controlplane.config import Settings  # noqa: E402
from controlplane.db import transaction  # noqa: E402
from controlplane.inventory.models import AgencySystem  # noqa: E402
from controlplane.migrations import upgrade  # noqa: E402
from controlplane.waves import flows  # noqa: E402
from controlplane.waves.models import Migration  # noqa: E402

PASSWORD = "bench-operator-password-1"
# Seconds on the dev cloud (tests/cloud/test_migration_devcloud.py and the roles' timings), per step.
MEASURED = {"provision": 40.0, "configure": 95.0, "move_data": 20.0, "verify": 30.0, "cutover": 15.0}


class TimedRunner(FakeRunner):
    """The fake runner, taking as long as the step's playbook takes on the dev cloud (scaled)."""

    def __init__(self, seconds: dict[str, float]) -> None:
        super().__init__()
        self.seconds = seconds

    def run(self, job: PlaybookJob, **kwargs: Any) -> RunResult:
        steps = job.extravars.get("migration_steps") or []
        step = ("verify" if job.playbook == "verify.yml" else "move_data" if steps == ["data_migration"]
                else "cutover" if steps == ["nginx"] else "configure")
        time.sleep(self.seconds[step])
        return super().run(job, **kwargs)


def _systems(agencies: list[str], count: int, now: Any, ids: dict[str, int], *,
             independent: bool) -> list[AgencySystem]:
    """Per agency: a PostgreSQL database (re-hosted, data moved), then WebLogic apps and WebtoB sites calling it
    (unless `independent`: then they call nothing, and nothing waits for another system's cutover)."""
    kinds = [
        ("db", [{"kind": "db", "vendor": "PostgreSQL", "product": "PostgreSQL", "version": "9.6"}], 1),
        ("app", [{"kind": "was", "vendor": "Oracle", "product": "WebLogic Server", "version": "12c"}], 0),
        ("web", [{"kind": "web", "vendor": "TmaxSoft", "product": "WebtoB", "version": "5"}], 0),
    ]
    rows = []
    for n in range(count):
        agency = agencies[n % len(agencies)]
        index = n // len(agencies)
        kind, components, data_gb = kinds[0] if index == 0 else kinds[1 + index % 2]
        depends = [] if index == 0 or independent else [f"{agency.lower()}-db-0"]
        rows.append(AgencySystem(code=f"{agency.lower()}-{kind}-{index}", agency_id=ids[agency], name_ko=kind,
                                 name_en=kind, criticality="medium", vcpus=1, ram_mb=1024, disk_gb=10,
                                 data_gb=data_gb, components=components, depends_on=depends, status="legacy",
                                 notes="", created_at=now, updated_at=now))
    return rows


def _inputs(rows: list[AgencySystem], files: Path) -> dict[str, Any]:
    files.mkdir(parents=True, exist_ok=True)
    for name in ("app.war", "db.sql", "manifest.json"):
        (files / name).write_text("{}")
    checksum = "sha256:" + "0" * 64
    inputs: dict[str, Any] = {}
    for row in rows:
        if "-db-" in row.code:
            inputs[row.code] = {"data": {"dump_src": str(files / "db.sql"),
                                         "manifest_src": str(files / "manifest.json")}}
        else:
            kind = "war" if "-app-" in row.code else "static"
            inputs[row.code] = {"front": {"name": f"front-{row.code}", "address": "10.78.0.5"},
                                "legacy_upstreams": ["10.78.0.6:80"],
                                "artifact": {"kind": kind, "name": "site", "src": str(files / "app.war"),
                                             "checksum": checksum}}
    return inputs


def _sequential(ctx: Any, wave_id: int) -> dict[str, float]:
    """The baseline: each system's steps, one system after the other, no engine; seconds per system."""
    with transaction(ctx.sessions) as session:
        migrations = [(m.id, m.system.code, list(m.plan["steps"])) for m in session.scalars(
            select(Migration).where(Migration.wave_id == wave_id).order_by(Migration.position))]
        session.execute(update(Migration).where(Migration.wave_id == wave_id).values(
            state="running", approved_at=Clock().now(), approved_by="bench"))
    took = {}
    for migration_id, code, steps in migrations:
        started = time.monotonic()
        for step in steps:
            outcome = flows.run_step(ctx, migration_id, step)
            assert outcome == "succeeded", (code, step, outcome)
        took[code] = time.monotonic() - started
    return took


def _approver(client: TestClient, headers: dict[str, str], wave_id: int, stop: threading.Event) -> None:
    """The operator: approves each cutover as soon as it is asked for."""
    approved: set[str] = set()
    while not stop.is_set():
        for m in client.get(f"/api/v1/waves/{wave_id}", headers=headers).json()["migrations"]:
            if m["state"] == "awaiting_approval" and m["id"] not in approved:
                assert client.post(f"/api/v1/migrations/{m['id']}/approve", headers=headers).status_code == 202
                approved.add(m["id"])
        stop.wait(0.05)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--systems", type=int, default=20)
    parser.add_argument("--agencies", type=int, default=5)
    parser.add_argument("--scale", type=float, default=1 / 30, help="seconds here per second on the dev cloud")
    parser.add_argument("--agency-concurrency", type=int, default=4)
    parser.add_argument("--cloud-concurrency", type=int, default=10)
    parser.add_argument("--independent", action="store_true", help="no system calls another")
    args = parser.parse_args()
    seconds = {step: value * args.scale for step, value in MEASURED.items()}
    work = Path(tempfile.mkdtemp(prefix="cp-bench-wave-"))  # removed at exit
    atexit.register(shutil.rmtree, work, ignore_errors=True)
    url = f"sqlite:///{work / 'controlplane.db'}"
    upgrade(url)
    settings = Settings(env="test", database_url=url, data_dir=work, cloud="bench", metrics_refresh_seconds=3600,
                        workflows=True, migration_agency_concurrency=args.agency_concurrency,
                        migration_cloud_concurrency=args.cloud_concurrency)
    cloud, runner = MigrationCloud(), TimedRunner(seconds)
    cloud.delay = seconds["provision"]
    cloud.hypervisor_list = [dataclasses.replace(h, vcpus=256, memory_mb=262144) for h in cloud.hypervisor_list]
    agencies = [f"BA{n:02d}" for n in range(args.agencies)]
    with transaction(_sessions(url)) as session:
        auth_service.create_user(session, clock=Clock(), actor="bench",
                                 data=UserCreate(username="ops", password=PASSWORD, role=Role.OPERATOR))
        for code in agencies:
            auth_service.create_agency(session, clock=Clock(), actor="bench", data=AgencyCreate(
                code=code, name_ko=code, name_en=code, kind=AgencyKind.AGENCY))
    app = create_app(settings, cloud_gateway=cloud, playbook_runner=runner, check_runner=FakeChecks())
    with TestClient(app) as client:
        ctx = app.state.ctx
        token = client.post("/api/v1/auth/token", json={"username": "ops", "password": PASSWORD}).json()
        headers = {"Authorization": f"Bearer {token['access_token']}"}
        client.put("/api/v1/credentials/bench-root", headers=headers, json={"private_key": _key(work)})
        for code in agencies:
            spec = SPEC | {"quotas": {"instances": 100, "cores": 100, "ram_mb": 102400, "volumes": 4}}
            assert client.put(f"/api/v1/cloud/agencies/{code}/onboarding", headers=headers,
                              json=spec | {"cidr": f"10.90.{agencies.index(code) + 1}.0/24"}).status_code == 201
            assert client.post(f"/api/v1/cloud/agencies/{code}/onboarding/apply", headers=headers).status_code == 202
        assert ctx.workflows.wait_idle(timeout=60)
        with transaction(ctx.sessions) as session:
            ids = {a.code: a.id for a in session.scalars(select(Agency).where(Agency.code.in_(agencies)))}
            rows = _systems(agencies, args.systems, Clock().now(), ids, independent=args.independent)
            session.add_all(rows)
            codes, inputs = [r.code for r in rows], _inputs(rows, ctx.settings.effective_artifacts_dir)

        def wave(name: str, systems: list[str]) -> int:
            response = client.post("/api/v1/waves", headers=headers, json={
                "name": name, "systems": systems, "credential": "bench-root",
                "inputs": {code: inputs[code] for code in systems}})
            assert response.status_code == 201, response.text
            return int(response.json()["id"])

        baseline_wave = wave("baseline", codes)
        per_system = _sequential(ctx, baseline_wave)
        baseline = sum(per_system.values())

        def legacy_again(systems: list[str]) -> None:
            """The same systems, legacy again for the next wave: their earlier migrations set aside as undone (a
            system is held by one wave at a time)."""
            with transaction(ctx.sessions) as session:
                ids = select(AgencySystem.id).where(AgencySystem.code.in_(systems))
                session.execute(update(AgencySystem).where(AgencySystem.id.in_(ids)).values(status="legacy"))
                session.execute(update(Migration).where(Migration.system_id.in_(ids)).values(state="rolled_back"))

        legacy_again(codes)

        def through_engine(name: str, systems: list[str]) -> float:
            """The wave's makespan: from `run` until every system is migrated (cutovers approved at once)."""
            wave_id = wave(name, systems)
            stop = threading.Event()
            approver = threading.Thread(target=_approver, args=(client, headers, wave_id, stop), daemon=True)
            started = time.monotonic()
            assert client.post(f"/api/v1/waves/{wave_id}/run", headers=headers).status_code == 202
            approver.start()
            while True:
                states = [m["state"] for m in client.get(f"/api/v1/waves/{wave_id}", headers=headers).json()[
                    "migrations"]]
                if all(s == "succeeded" for s in states):
                    break
                assert not {"failed", "canceled"} & set(states), states
                time.sleep(0.05)
            took = time.monotonic() - started
            stop.set()
            approver.join()
            return took

        makespan = through_engine("engine", codes)
        slowest_code = max(per_system, key=lambda code: per_system[code])
        legacy_again([slowest_code])  # the slowest alone (what it calls stays migrated)
        single = through_engine("single", [slowest_code])
    slowest = per_system[slowest_code]
    print(f"{args.systems} systems of {args.agencies} agencies; step latencies "
          + ", ".join(f"{k} {v:.2f} s" for k, v in seconds.items())
          + f" (dev cloud x {args.scale:.3f}); agency concurrency {args.agency_concurrency}, "
            f"cloud concurrency {args.cloud_concurrency}; "
            + ("independent systems" if args.independent else "apps and sites call their agency's database"))
    print(f"baseline (one system at a time): {baseline:.1f} s")
    print(f"engine (the wave's makespan):    {makespan:.1f} s")
    print(f"slowest single system:           {single:.1f} s through the engine alone, {slowest:.1f} s as bare "
          f"steps ({slowest_code})")
    speedup, spread = baseline / makespan, makespan / single
    print(f"speed-up {speedup:.1f}x (goal >= 5x: {'met' if speedup >= 5 else 'NOT met'}); makespan / slowest "
          f"{spread:.2f} (goal <= 1.3: {'met' if spread <= 1.3 else 'NOT met'}); makespan / bare steps "
          f"{makespan / slowest:.2f}")
    return 0


def _sessions(url: str) -> Any:
    from controlplane.db import make_engine, make_sessionmaker

    return make_sessionmaker(make_engine(url))


def _key(work: Path) -> str:
    import subprocess

    path = work / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.read_text()


if __name__ == "__main__":
    raise SystemExit(main())
