"""The jobs layer around the runner and check ports: API, permissions, validation, audit, secrets, events, SSE,
cancel, interrupted jobs and metrics, with the fakes of tests/around/jobs_fakes.py injected (on both databases)."""
# ruff: noqa: F811  (pytest fixtures imported from jobs_fakes are parameters of the tests)

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jobs_fakes import HOSTS, SECRET, automation, headers, operator, ssh_private_key  # noqa: F401
from jobs_fakes import job_request as _job
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from controlplane.auth.models import AuditEntry
from controlplane.automation import flows, service
from controlplane.automation.models import Credential, Job, JobEvent
from controlplane.automation.schemas import JobIn
from controlplane.db import Base, transaction
from controlplane.secrets import secret_box


def _run(automation: Any, operator: dict[str, str], **overrides: Any) -> dict[str, Any]:
    accepted = automation.client.post("/api/v1/jobs", headers=operator, json=_job(**overrides))
    assert accepted.status_code == 202, accepted.text
    automation.wait()
    job = automation.client.get(accepted.json()["url"], headers=operator)
    assert job.status_code == 200
    return dict(job.json())


def _all_text(sessions: sessionmaker[Session]) -> str:
    """Every row of every table, as text: where a leaked secret would be found."""
    with transaction(sessions) as session:
        return "\n".join(str(tuple(row)) for table in Base.metadata.sorted_tables
                         for row in session.execute(select(table)))


# --- credentials ---------------------------------------------------------------------------------------

def test_a_credential_is_stored_sealed_and_shown_by_its_fingerprint(automation: Any, operator: dict[str, str],
                                                                    ssh_private_key: str) -> None:
    listed = automation.client.get("/api/v1/credentials", headers=operator).json()
    assert [(c["name"], c["username"], c["known_hosts_entries"]) for c in listed] == [("hosts-root", "root", 0)]
    assert listed[0]["public_key"].startswith("ssh-ed25519 ") and listed[0]["fingerprint"].startswith("SHA256:")
    body = ssh_private_key.split("\n")[1]
    assert body not in json.dumps(listed) and body not in _all_text(automation.sessions)
    with transaction(automation.sessions) as session:
        entry = session.scalars(select(AuditEntry).where(AuditEntry.entity_type == "credential")).one()
        assert (entry.action, entry.after["secret"], entry.actor) == ("create", "***", "ops1")

    rotated = automation.client.put("/api/v1/credentials/hosts-root", headers=operator,
                                    json={"private_key": ssh_private_key, "username": "deploy",
                                          "known_hosts": "10.78.0.11 ssh-ed25519 AAAAC3Nza\n# a comment\n"})
    assert rotated.status_code == 200
    assert (rotated.json()["username"], rotated.json()["known_hosts_entries"]) == ("deploy", 1)


@pytest.mark.parametrize("engine_on", [False])  # refused before any work is handed over
@pytest.mark.parametrize(("body", "field", "reason"), [
    ({"private_key": "not a key"}, "private_key", "not an OpenSSH or PEM private key"),
    ({"private_key": "k", "username": "Root!"}, "username", "String should match pattern"),
    ({"private_key": "k", "extra": 1}, "extra", "Extra inputs are not permitted"),
])
def test_a_bad_credential_is_refused_naming_the_field(automation: Any, operator: dict[str, str],
                                                      body: dict[str, Any], field: str, reason: str) -> None:
    response = automation.client.put("/api/v1/credentials/other", headers=operator, json=body)
    assert response.status_code == 422
    assert response.json()["field"] == field and reason in response.json()["message"]


def test_a_passphrase_protected_key_is_refused(automation: Any, operator: dict[str, str], tmp_path: Any) -> None:
    import subprocess

    key = tmp_path / "locked"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "passphrase", "-f", str(key)], check=True)
    response = automation.client.put("/api/v1/credentials/locked", headers=operator,
                                     json={"private_key": key.read_text()})
    assert response.status_code == 422 and "passphrase" in response.json()["message"]


def test_a_credential_in_use_cannot_be_deleted_an_unused_one_can(automation: Any, operator: dict[str, str],
                                                                 ssh_private_key: str) -> None:
    _run(automation, operator)
    refused = automation.client.delete("/api/v1/credentials/hosts-root", headers=operator)
    assert refused.status_code == 409 and "used by 1 job" in refused.json()["message"]
    automation.client.put("/api/v1/credentials/spare", headers=operator, json={"private_key": ssh_private_key})
    assert automation.client.delete("/api/v1/credentials/spare", headers=operator).status_code == 204
    assert automation.client.delete("/api/v1/credentials/spare", headers=operator).status_code == 404


# --- a job from request to evidence --------------------------------------------------------------------------

def test_a_job_runs_the_playbook_then_the_checks_and_keeps_the_evidence(automation: Any,
                                                                        operator: dict[str, str]) -> None:
    accepted = automation.client.post("/api/v1/jobs", headers=operator, json=_job())
    assert accepted.status_code == 202
    body = accepted.json()
    assert accepted.headers["Location"] == body["url"] == f"/api/v1/jobs/{body['job_id']}"
    assert body["events_url"] == body["url"] + "/events" and body["stream_url"] == body["url"] + "/events/stream"
    automation.wait()

    job = automation.client.get(body["url"], headers=operator).json()
    assert (job["status"], job["explanation"], job["rc"]) == ("successful", "", 0)
    assert job["secret_names"] == ["postgresql_db_owner_password"] and SECRET not in json.dumps(job)
    assert job["host_stats"] == {"db-1": {"ok": 1, "changed": 1, "failed": 0, "unreachable": 0, "skipped": 0},
                                 "web-1": {"ok": 1, "changed": 1, "failed": 0, "unreachable": 0, "skipped": 0}}
    assert job["verification"] == {"passed": 4, "failed": 0, "skipped": 0, "error": None}

    # What the runner was given: the inventory with the role groups, the secret apart, the credential's key.
    (given,) = automation.runner.jobs
    assert given.playbook == "site.yml" and given.secrets == {"postgresql_db_owner_password": SECRET}
    assert given.inventory["all"]["hosts"]["db-1"] == {"postgresql_db_name": "app", "ansible_host": "10.78.0.12",
                                                       "ansible_user": "root"}
    assert given.inventory["all"]["children"] == {"postgresql": {"hosts": {"db-1": {}}},
                                                  "nginx": {"hosts": {"web-1": {}}}}
    assert given.private_key and given.private_key.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    assert given.known_hosts == ""  # no keys recorded: trust on first use, within this job
    # What the checks were given: each host's roles, the job's variables, the keys the run met; no secret.
    (request,) = automation.checks.requests
    assert request.roles == ("base", "postgresql", "nginx")
    assert request.check_vars["hosts"]["10.78.0.12"]["check_roles"] == ["base", "postgresql"]
    assert request.check_vars["vars"] == {"nginx_listen_port": 8081}
    assert request.known_hosts == "10.78.0.11 ssh-ed25519 AAAAfake\n10.78.0.12 ssh-ed25519 AAAAfake\n"
    assert SECRET not in json.dumps(request.check_vars)

    events = automation.client.get(body["events_url"], headers=operator).json()
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [(e["kind"], e["host"]) for e in events[:5]] == [
        ("play", None), ("task", None), ("ok", "web-1"), ("ok", "db-1"), ("verify", None)]
    assert [(e["host"], e["task"], e["status"]) for e in events if e["kind"] == "check"] == [
        ("web-1", "base: test_base_service_running", "passed"),
        ("web-1", "nginx: test_nginx_service_running", "passed"),
        ("db-1", "base: test_base_service_running", "passed"),
        ("db-1", "postgresql: test_postgresql_service_running", "passed")]
    assert [e["seq"] for e in automation.client.get(body["events_url"] + "?after=7", headers=operator).json()] == \
        [8, 9]
    checks = automation.client.get(body["url"] + "/checks", headers=operator).json()
    assert [(c["host"], c["role"], c["outcome"]) for c in checks] == [
        ("10.78.0.11", "base", "passed"), ("10.78.0.11", "nginx", "passed"),
        ("10.78.0.12", "base", "passed"), ("10.78.0.12", "postgresql", "passed")]

    # The secret is gone from the database once the job ended; the audit says who ran what.
    assert SECRET not in _all_text(automation.sessions)
    with transaction(automation.sessions) as session:
        assert session.get(Job, body["job_id"]).secrets_sealed is None
        actions = session.execute(select(AuditEntry.action, AuditEntry.actor)
                                  .where(AuditEntry.entity_type == "job").order_by(AuditEntry.id)).all()
    assert [tuple(a) for a in actions] == [("run", "ops1"), ("finished", "system")]


def test_migrate_system_checks_only_the_steps_it_applied(automation: Any, operator: dict[str, str]) -> None:
    job = _run(automation, operator, playbook="migrate_system.yml",
               extravars={"migration_system": "moisweb", "migration_steps": ["nginx"]})
    assert job["status"] == "successful"
    (request,) = automation.checks.requests
    assert request.roles == ("nginx",)
    assert request.check_vars["hosts"]["10.78.0.12"]["check_roles"] == []


def test_only_the_hosts_the_playbook_ran_on_are_checked(automation: Any, operator: dict[str, str]) -> None:
    job = _run(automation, operator, limit="web-1")
    assert job["status"] == "successful" and list(job["host_stats"]) == ["web-1"]
    (request,) = automation.checks.requests
    assert (request.addresses, request.roles) == (("10.78.0.11",), ("base", "nginx"))


def test_a_migration_step_no_host_takes_has_nothing_to_check(automation: Any, operator: dict[str, str]) -> None:
    job = _run(automation, operator, playbook="migrate_system.yml",
               extravars={"migration_system": "moisweb", "migration_steps": ["tomcat"]})
    assert (job["status"], job["verification"]) == ("successful", {"passed": 0, "failed": 0, "skipped": 0,
                                                                  "error": None})
    assert automation.checks.requests == []
    events = automation.client.get(f"/api/v1/jobs/{job['id']}/events", headers=operator).json()
    assert events[-1]["kind"] == "verify" and events[-1]["message"] == "no role was applied: nothing to check"


def test_a_job_without_verification_runs_no_checks(automation: Any, operator: dict[str, str]) -> None:
    job = _run(automation, operator, verify=False)
    assert (job["status"], job["verification"]) == ("successful", None)
    assert automation.checks.requests == []


def test_a_failed_task_names_the_task_and_host_and_skips_the_checks(automation: Any, operator: dict[str, str]) -> None:
    automation.runner.fail_host = "db-1"
    job = _run(automation, operator)
    assert job["status"] == "failed"
    assert job["explanation"] == "task 'Install packages' on db-1 failed: No package matching 'tomcat11' is available"
    assert job["host_stats"]["db-1"]["failed"] == 1 and job["verification"] is None
    assert automation.checks.requests == []


def test_a_failed_check_fails_the_job_with_the_checks_message(automation: Any, operator: dict[str, str]) -> None:
    automation.checks.failing = {("10.78.0.11", "nginx")}
    job = _run(automation, operator)
    assert job["status"] == "failed"
    assert job["explanation"] == ("check test_nginx_service_running of role nginx failed on web-1: "
                                  "AssertionError: nginx is not running")
    assert job["verification"] == {"passed": 3, "failed": 1, "skipped": 0, "error": None}


def test_checks_that_cannot_run_fail_the_job_saying_why(automation: Any, operator: dict[str, str]) -> None:
    automation.checks.error = "the checks did not run (pytest exit 4): ERROR: file or directory not found"
    job = _run(automation, operator)
    assert job["status"] == "failed"
    assert job["explanation"].startswith("verification could not run: the checks did not run (pytest exit 4)")


def test_a_runner_that_breaks_fails_the_job_without_details(automation: Any, operator: dict[str, str]) -> None:
    automation.runner.error = RuntimeError(f"boom {SECRET}")
    job = _run(automation, operator)
    assert (job["status"], job["explanation"]) == ("failed", "unexpected error (RuntimeError); see the server log")
    assert SECRET not in _all_text(automation.sessions)


# --- bad input -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine_on", [False])  # refused before any work is handed over
@pytest.mark.parametrize(("overrides", "status", "field", "reason"), [
    ({"playbook": "rm.yml"}, 422, "playbook", "unknown playbook 'rm.yml'"),
    ({"hosts": []}, 422, "hosts", "at least 1 item"),
    ({"hosts": [{"name": "a b", "address": "10.78.0.1"}]}, 422, "hosts.0.name", "letters, digits"),
    ({"hosts": [HOSTS[0], HOSTS[0]]}, 422, "hosts.1.name", "listed twice"),
    ({"hosts": [{"name": "w", "address": "10.78.0.1", "groups": ["oracle"]}]}, 422, "hosts.0.groups",
     "unknown group 'oracle'"),
    ({"hosts": [{"name": "w", "address": "10.78.0.1", "vars": {"ansible_ssh_common_args": "-o ProxyCommand=x"}}]},
     422, "hosts.0.vars.ansible_ssh_common_args", "set by the control plane"),
    ({"extravars": {"ansible_connection": "local"}}, 422, "extravars.ansible_connection", "set by the control plane"),
    ({"extravars": {"app_db_password": "x"}}, 422, "extravars.app_db_password", "looks like a secret"),
    ({"extravars": {"postgresql_db_owner_password": "x"}}, 422, "extravars.postgresql_db_owner_password",
     "looks like a secret"),
    ({"extravars": {"migration_steps": ["oracle"]}}, 422, "extravars.migration_steps", "a list of roles"),
    ({"timeout_seconds": 1}, 422, "timeout_seconds", "greater than or equal to 10"),
    ({"credential": "nobody"}, 404, "credential", "unknown credential 'nobody'"),
    ({"agency": "NOPE"}, 404, "agency", "unknown agency 'NOPE'"),
    # --limit names the job's own hosts and groups only: Ansible's @file form would read a file of this machine.
    ({"limit": "@/etc/passwd"}, 422, "limit", "'@/etc/passwd' is not one of the job's hosts or groups"),
    ({"limit": "web-*"}, 422, "limit", "'web-*' is not one of the job's hosts or groups"),
    ({"limit": "web-1,~db.*"}, 422, "limit", "'~db.*' is not one of the job's hosts or groups"),
    # Files the roles copy to the hosts come from the artifacts directory only.
    ({"extravars": {"app_deploy_artifact_src": "/etc/shadow"}}, 422, "extravars.app_deploy_artifact_src",
     "outside the artifacts directory"),
    ({"hosts": [{"name": "w", "address": "10.78.0.1", "vars": {"data_migration_dump_src": "../../etc/passwd"}}]},
     422, "hosts.0.vars.data_migration_dump_src", "outside the artifacts directory"),
    ({"extravars": {"data_migration_csv_files": [{"table": "t", "src": "/etc/hosts"}]}}, 422,
     "extravars.data_migration_csv_files.0.src", "outside the artifacts directory"),
    ({"extravars": {"app_deploy_artifact_src": ["/etc/shadow"]}}, 422, "extravars.app_deploy_artifact_src",
     "a file name in the artifacts directory"),
    ({"extravars": {"data_migration_manifest_src": "missing.json"}}, 422, "extravars.data_migration_manifest_src",
     "no file 'missing.json' in the artifacts directory"),
])
def test_a_bad_job_is_refused_naming_the_field_and_nothing_is_recorded(
    automation: Any, operator: dict[str, str], overrides: dict[str, Any], status: int, field: str, reason: str
) -> None:
    response = automation.client.post("/api/v1/jobs", headers=operator, json=_job(**overrides))
    assert response.status_code == status, response.text
    assert response.json()["field"] == field and reason in response.json()["message"], response.json()
    with transaction(automation.sessions) as session:
        assert session.scalars(select(Job)).all() == []
    assert automation.runner.jobs == []


@pytest.mark.parametrize("limit", ["web-1", "db-1,web-1", "all:!db-1", "nginx:&web-1"])
def test_a_limit_of_the_jobs_own_hosts_and_groups_is_passed_on(automation: Any, operator: dict[str, str],
                                                                limit: str) -> None:
    assert _run(automation, operator, limit=limit, verify=False)["limit"] == limit
    assert automation.runner.jobs[-1].limit == limit


def test_files_are_taken_from_the_artifacts_directory_by_their_real_path(automation: Any, operator: dict[str, str],
                                                                          tmp_path: Path) -> None:
    artifacts = automation.client.app.state.ctx.settings.effective_artifacts_dir
    (artifacts / "releases").mkdir(parents=True)
    (artifacts / "releases" / "app.war").write_bytes(b"war")
    csv_files = [{"table": "t", "src": str(artifacts / "releases/app.war")}]
    job = _run(automation, operator, verify=False, extravars={"app_deploy_artifact_src": "releases/app.war"},
               hosts=[{"name": "w", "address": "10.78.0.1", "vars": {"data_migration_csv_files": csv_files}}])
    real = str((artifacts / "releases" / "app.war").resolve())
    assert job["extravars"]["app_deploy_artifact_src"] == real
    assert job["hosts"][0]["vars"]["data_migration_csv_files"][0]["src"] == real
    assert automation.runner.jobs[-1].extravars["app_deploy_artifact_src"] == real


def test_a_link_that_leads_out_of_the_artifacts_directory_is_refused_then_and_at_run_time(
        automation: Any, operator: dict[str, str], tmp_path: Path) -> None:
    artifacts = automation.client.app.state.ctx.settings.effective_artifacts_dir
    artifacts.mkdir(parents=True)
    outside = tmp_path / "outside.txt"
    outside.write_text("the control plane's own file")
    (artifacts / "leak.war").symlink_to(outside)
    refused = automation.client.post("/api/v1/jobs", headers=operator,
                                     json=_job(extravars={"app_deploy_artifact_src": "leak.war"}))
    assert refused.status_code == 422 and "outside the artifacts directory" in refused.json()["message"]

    # A file checked when the job was requested, replaced by a link before it runs: the job fails, nothing runs.
    (artifacts / "app.war").write_bytes(b"war")
    ctx = automation.client.app.state.ctx
    with transaction(automation.sessions) as session:
        job_id = flows.request_job(session, ctx=ctx, actor="ops1", data=JobIn.model_validate(
            _job(verify=False, extravars={"app_deploy_artifact_src": "app.war"}))).id
    (artifacts / "app.war").unlink()
    (artifacts / "app.war").symlink_to(outside)
    flows.run_job(ctx, job_id=job_id)
    job = automation.client.get(f"/api/v1/jobs/{job_id}", headers=operator).json()
    assert job["status"] == "failed" and "outside the artifacts directory" in job["explanation"], job
    assert automation.runner.jobs == []


# --- cancel ----------------------------------------------------------------------------------------------

def test_a_running_job_is_canceled_on_request_and_an_ended_one_cannot_be(automation: Any,
                                                                         operator: dict[str, str]) -> None:
    automation.runner.gate = threading.Event()
    job_id = automation.client.post("/api/v1/jobs", headers=operator, json=_job()).json()["job_id"]
    assert automation.runner.started.wait(10)
    canceled = automation.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=operator)
    assert canceled.status_code == 202 and canceled.json()["cancel_requested"] is True
    automation.wait()
    job = automation.client.get(f"/api/v1/jobs/{job_id}", headers=operator).json()
    assert (job["status"], job["explanation"]) == ("canceled", "canceled on request")
    assert automation.checks.requests == []
    again = automation.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=operator)
    assert again.status_code == 409 and again.json()["code"] == "job_finished"


def test_a_cancel_through_the_database_reaches_a_job_run_by_another_process(automation: Any,
                                                                            operator: dict[str, str]) -> None:
    """As `controlplane jobs cancel` does from its own process: only the row says so; the runner notices it."""
    automation.runner.gate = threading.Event()
    job_id = automation.client.post("/api/v1/jobs", headers=operator, json=_job()).json()["job_id"]
    assert automation.runner.started.wait(10)
    with transaction(automation.sessions) as session:
        session.execute(text("UPDATE automation_jobs SET cancel_requested = :yes WHERE id = :id"),
                        {"yes": True, "id": job_id})
    automation.wait()
    assert automation.client.get(f"/api/v1/jobs/{job_id}", headers=operator).json()["status"] == "canceled"


def test_a_pending_job_is_canceled_at_once(automation: Any, operator: dict[str, str], clock: Any) -> None:
    with transaction(automation.sessions) as session:
        job = service.request_job(session, clock=clock, actor="ops1", box=secret_box(
            automation.client.app.state.ctx.settings), data=JobIn.model_validate(_job()), runner="elsewhere:1:1",
            artifacts=automation.client.app.state.ctx.settings.effective_artifacts_dir)
        job_id = job.id
    with transaction(automation.sessions) as session:
        canceled = service.request_cancel(session, clock=clock, actor="ops1", job_id=job_id)
        assert (canceled.status, canceled.secrets_sealed) == ("canceled", None)
    assert flows.run_job(automation.client.app.state.ctx, job_id=job_id) is None  # never starts afterwards
    assert automation.runner.jobs == []


# --- who may do what -------------------------------------------------------------------------------------

def test_who_may_read_run_and_cancel_jobs(automation: Any, operator: dict[str, str],
                                          headers: Callable[..., dict[str, str]]) -> None:
    mois_job = _run(automation, operator)["id"]
    other_job = _run(automation, operator, agency=None)["id"]
    mois, moef = headers("mois-1", "ministry", "MOIS"), headers("moef-1", "ministry", "MOEF")
    auditor, secretariat = headers("aud-1", "auditor"), headers("sec-1", "secretariat")
    client = automation.client

    assert {j["id"] for j in client.get("/api/v1/jobs", headers=auditor).json()} == {mois_job, other_job}
    assert [j["id"] for j in client.get("/api/v1/jobs", headers=mois).json()] == [mois_job]
    assert client.get("/api/v1/jobs", headers=moef).json() == []
    assert client.get(f"/api/v1/jobs/{mois_job}", headers=mois).status_code == 200
    for path in (f"/api/v1/jobs/{mois_job}", f"/api/v1/jobs/{mois_job}/events", f"/api/v1/jobs/{mois_job}/checks",
                 f"/api/v1/jobs/{mois_job}/events/stream", f"/api/v1/jobs/{other_job}"):
        assert client.get(path, headers=moef).status_code == 404, path
    assert client.get("/api/v1/jobs", headers=secretariat).status_code == 403
    assert client.get("/api/v1/jobs").status_code == 401
    for who in (auditor, mois, secretariat):
        assert client.post("/api/v1/jobs", headers=who, json=_job()).status_code == 403
        assert client.post(f"/api/v1/jobs/{mois_job}/cancel", headers=who).status_code == 403
        assert client.put("/api/v1/credentials/x", headers=who, json={"private_key": "k"}).status_code == 403
    # The control plane's SSH credentials (names, fingerprints, who made them) are for admins, operators, auditors.
    assert [c["name"] for c in client.get("/api/v1/credentials", headers=auditor).json()] == ["hosts-root"]
    assert client.get("/api/v1/credentials", headers=operator).status_code == 200
    for who in (mois, secretariat):
        assert client.get("/api/v1/credentials", headers=who).status_code == 403


# --- events stream, interruption, metrics -----------------------------------------------------------------

def test_events_stream_as_server_sent_events_until_the_end(automation: Any, operator: dict[str, str]) -> None:
    job_id = _run(automation, operator)["id"]
    with automation.client.stream("GET", f"/api/v1/jobs/{job_id}/events/stream", headers=operator) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    messages = [block for block in body.split("\n\n") if block.strip()]
    assert messages[0] == "retry: 2000"
    first = dict(line.split(": ", 1) for line in messages[1].splitlines())
    assert (first["id"], first["event"], json.loads(first["data"])["kind"]) == ("1", "job-event", "play")
    assert messages[-1] == 'event: end\ndata: {"status": "successful", "explanation": ""}'
    assert len(messages) == 1 + 9 + 1

    # A client that reconnects with Last-Event-ID gets only what came after.
    with automation.client.stream("GET", f"/api/v1/jobs/{job_id}/events/stream",
                                  headers={**operator, "Last-Event-ID": "8"}) as response:
        ids = [line for line in "".join(response.iter_text()).splitlines() if line.startswith("id: ")]
    assert ids == ["id: 9"]


def test_a_job_a_stop_cut_short_ends_interrupted_and_one_never_queued_runs(automation: Any,
                                                                            operator: dict[str, str],
                                                                            clock: Any) -> None:
    ctx = automation.client.app.state.ctx
    ids = {}
    with transaction(automation.sessions) as session:
        for name in ("cut-short", "never-queued", "run-by-its-requester"):
            job = service.request_job(session, clock=clock, actor="ops1", box=secret_box(ctx.settings),
                                      data=JobIn.model_validate(_job()), runner="gone:1:1",
                                      artifacts=ctx.settings.effective_artifacts_dir,
                                      queued=name != "run-by-its-requester")
            ids[name] = job.id
        session.get(Job, ids["cut-short"]).status = "running"  # as a server stopped while it ran leaves it
    # What the engine does when it recovers the workflow of the job cut short: its step runs again.
    ctx.workflows.enqueue(flows.PLAYBOOK_QUEUE, flows.JOB_WORKFLOW, ids["cut-short"],
                          workflow_id=f"job-{ids['cut-short']}")
    # The pending one, recorded but never handed to the engine; not the one a migration step (or the CLI) is about
    # to run itself: queued too, the two would race for the same hosts.
    assert flows.resume_unqueued(ctx) == 1
    automation.wait()
    cut = automation.client.get(f"/api/v1/jobs/{ids['cut-short']}", headers=operator).json()
    assert cut["status"] == "failed" and cut["explanation"].startswith("interrupted: the server stopped")
    assert automation.client.get(f"/api/v1/jobs/{ids['never-queued']}", headers=operator).json()["status"] == \
        "successful"
    assert len(automation.runner.jobs) == 1  # the job cut short was not run again
    assert automation.client.get(f"/api/v1/jobs/{ids['run-by-its-requester']}", headers=operator).json()["status"] \
        == "pending"
    assert SECRET not in _all_text(automation.sessions)


def test_job_metrics(automation: Any, operator: dict[str, str]) -> None:
    _run(automation, operator)
    automation.checks.failing = {("10.78.0.12", "postgresql")}
    _run(automation, operator)
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(automation.client.get("/metrics").text)
               for s in family.samples}
    assert samples[("controlplane_automation_jobs_total", (("playbook", "site.yml"), ("status", "successful")))] == 1
    assert samples[("controlplane_automation_jobs_total", (("playbook", "site.yml"), ("status", "failed")))] == 1
    assert samples[("controlplane_automation_checks_total", (("outcome", "failed"), ("role", "postgresql")))] == 1
    assert samples[("controlplane_automation_checks_total", (("outcome", "passed"), ("role", "base")))] == 4
    assert samples[("controlplane_automation_job_duration_seconds_count", (("playbook", "site.yml"),))] == 2
    assert samples[("controlplane_automation_jobs_running", ())] == 0


def test_stored_rows_hold_no_secret_while_a_job_waits(automation: Any, operator: dict[str, str]) -> None:
    automation.runner.gate = threading.Event()
    automation.client.post("/api/v1/jobs", headers=operator, json=_job())
    assert automation.runner.started.wait(10)
    try:
        assert SECRET not in _all_text(automation.sessions)  # sealed while it runs
        with transaction(automation.sessions) as session:
            assert session.scalars(select(Credential.private_key_sealed)).one().startswith("gAAAA")
            assert session.scalars(select(JobEvent)).all()
    finally:
        automation.runner.gate.set()
        automation.wait()
