"""Pure rules of playbook jobs: runner outcome -> job status, runner events -> stored events, redaction."""

from __future__ import annotations

import pytest

from controlplane.automation.domain import (
    REDACTED,
    HostStats,
    JobEvent,
    JobHost,
    JobSpecError,
    JobStatus,
    Outcome,
    check_vars,
    checks_from_evidence,
    event_from_runner,
    host_stats,
    inventory,
    job_outcome,
    redact,
    roles_of,
    validate_job,
    verification_outcome,
)


def _event(kind: str, host: str = "db-1", task: str = "Install", message: str = "", changed: bool = False) -> JobEvent:
    return JobEvent(seq=1, kind=kind, host=host, task=task, status=kind, changed=changed, duration=0.1,
                    message=message)


def test_runner_status_maps_to_job_status_in_one_place() -> None:
    assert job_outcome("successful", 0, timeout_seconds=None).status is JobStatus.SUCCESSFUL
    canceled = job_outcome("canceled", 254, timeout_seconds=None)
    assert (canceled.status, canceled.explanation) == (JobStatus.CANCELED, "canceled on request")
    timeout = job_outcome("timeout", 254, timeout_seconds=600)
    assert timeout.status is JobStatus.FAILED and "600 s" in timeout.explanation
    failures = [_event("failed", message="No package matching 'tomcat11'"), _event("failed", "db-2")]
    failed = job_outcome("failed", 2, timeout_seconds=None, failures=failures)
    assert failed.explanation == "task 'Install' on db-1 failed: No package matching 'tomcat11' (and 1 more)"
    assert job_outcome("failed", 4, timeout_seconds=None, failures=[_event("unreachable", task="")]).explanation == (
        "host db-1 unreachable")
    assert "status failed (rc 1)" in job_outcome("failed", 1, timeout_seconds=None).explanation


def test_runner_events_become_stored_events_with_secrets_redacted() -> None:
    raw = {"event": "runner_on_failed", "counter": 7, "event_data": {
        "host": "db-1", "task": "Create role", "duration": 1.5,
        "res": {"msg": "password hunter2 rejected", "changed": False}}}
    event = event_from_runner(raw, ["hunter2"])
    assert event == JobEvent(7, "failed", "db-1", "Create role", "failed", False, 1.5, f"password {REDACTED} rejected")
    hidden = event_from_runner({"event": "runner_on_failed", "event_data": {
        "host": "db-1", "task": "t", "res": {"censored": "the output has been hidden", "_ansible_no_log": True}}})
    assert hidden is not None and hidden.message == "the output has been hidden (no_log)"
    ignored = event_from_runner({"event": "runner_on_failed", "event_data": {"host": "h", "ignore_errors": True}})
    assert ignored is not None and ignored.kind == "ok"
    assert event_from_runner({"event": "verbose", "stdout": "noise"}) is None
    task = event_from_runner({"event": "playbook_on_task_start", "counter": 3, "event_data": {"task": "Install"}})
    assert task is not None and (task.kind, task.task, task.host) == ("task", "Install", None)


def test_redaction_replaces_longer_secrets_first() -> None:
    assert redact("pw=abc123 and abc", ["abc", "abc123"]) == f"pw={REDACTED} and {REDACTED}"
    assert redact("nothing here", ["", "zzz"]) == "nothing here"


def test_host_stats_count_results_per_host() -> None:
    events = [_event("ok", changed=True), _event("ok"), _event("skipped"), _event("failed", "db-2"),
              JobEvent(9, "task", None, "Install", "task", False, None, "")]
    assert host_stats(events) == {"db-1": HostStats(ok=2, changed=1, skipped=1), "db-2": HostStats(failed=1)}


# -- jobs as requested -------------------------------------------------------------------------------------------

WEB = JobHost("web-1", "10.78.0.11", ("nginx", "app_deploy"), {"nginx_listen_port": 8080})
DB = JobHost("db-1", "10.78.0.12", ("postgresql", "data_migration"))


def test_roles_follow_the_playbooks_order_and_the_migration_steps() -> None:
    assert roles_of("site.yml", WEB, {}) == ("base", "nginx", "app_deploy")
    assert roles_of("verify.yml", DB, {}) == ("base", "postgresql", "data_migration")
    steps = {"migration_steps": ["data_migration", "nginx"]}
    assert roles_of("migrate_system.yml", DB, steps) == ("data_migration",)
    assert roles_of("migrate_system.yml", WEB, steps) == ("nginx",)
    assert roles_of("migrate_system.yml", WEB, {}) == ("base", "nginx", "app_deploy")


def test_the_inventory_puts_hosts_in_their_role_groups_with_the_connection_of_the_credential() -> None:
    assert inventory([WEB, DB], user="deploy") == {"all": {
        "hosts": {"web-1": {"nginx_listen_port": 8080, "ansible_host": "10.78.0.11", "ansible_user": "deploy"},
                  "db-1": {"ansible_host": "10.78.0.12", "ansible_user": "deploy"}},
        "children": {"postgresql": {"hosts": {"db-1": {}}}, "data_migration": {"hosts": {"db-1": {}}},
                     "nginx": {"hosts": {"web-1": {}}}, "app_deploy": {"hosts": {"web-1": {}}}},
    }}


def test_check_vars_give_each_address_its_variables_and_roles() -> None:
    assert check_vars("site.yml", [WEB, DB], {"nginx_site_name": "front"}) == {
        "vars": {"nginx_site_name": "front"},
        "hosts": {"10.78.0.11": {"nginx_listen_port": 8080, "check_roles": ["base", "nginx", "app_deploy"]},
                  "10.78.0.12": {"check_roles": ["base", "postgresql", "data_migration"]}},
    }


@pytest.mark.parametrize(("playbook", "hosts", "extravars", "secrets", "field", "reason"), [
    ("reboot.yml", [WEB], {}, [], "playbook", "unknown playbook"),
    ("site.yml", [], {}, [], "hosts", "at least one host"),
    ("site.yml", [JobHost("-web", "10.0.0.1")], {}, [], "hosts.0.name", "first a letter or digit"),
    ("site.yml", [JobHost("web", "10.0.0.1; rm -rf /")], {}, [], "hosts.0.address", "an IPv4 address or a host name"),
    ("site.yml", [WEB, WEB], {}, [], "hosts.1.name", "listed twice"),
    ("site.yml", [JobHost("w", "10.0.0.1", ("weblogic",))], {}, [], "hosts.0.groups", "unknown group 'weblogic'"),
    ("site.yml", [JobHost("w", "10.0.0.1", vars={"ansible_become_exe": "sh"})], {}, [],
     "hosts.0.vars.ansible_become_exe", "set by the control plane"),
    ("site.yml", [JobHost("w", "10.0.0.1", vars={"db_password": "x"})], {}, [], "hosts.0.vars.db_password",
     "looks like a secret"),
    ("site.yml", [WEB], {"check_roles": ["base"]}, [], "extravars.check_roles", "set by the control plane"),
    ("site.yml", [WEB], {"bad-name": 1}, [], "extravars.bad-name", "not a valid variable name"),
    ("site.yml", [WEB], {"api_token": "x"}, [], "extravars.api_token", "looks like a secret"),
    ("site.yml", [WEB], {"db_user": "app"}, ["db_user"], "secrets.db_user", "also given in extravars"),
    ("site.yml", [WEB], {}, ["ansible_password"], "secrets.ansible_password", "set by the control plane"),
    ("migrate_system.yml", [WEB], {"migration_steps": "nginx"}, [], "extravars.migration_steps", "a list of roles"),
])
def test_a_job_that_cannot_run_is_refused_naming_the_field(playbook: str, hosts: list[JobHost],
                                                          extravars: dict[str, object], secrets: list[str],
                                                          field: str, reason: str) -> None:
    with pytest.raises(JobSpecError) as refused:
        validate_job(playbook, hosts, extravars, secrets)
    assert refused.value.field == field and reason in refused.value.reason


def test_a_good_job_passes_and_secrets_may_look_like_secrets() -> None:
    validate_job("site.yml", [WEB, DB], {"nginx_site_name": "front"}, ["postgresql_db_owner_password"])


EVIDENCE = {"passed": False, "hosts": {
    "10.78.0.12": {"checks": [{"role": "postgresql", "check": "test_listens", "outcome": "passed", "duration": 0.2,
                               "message": ""}]},
    "10.78.0.11": {"checks": [
        {"role": "nginx", "check": "test_site", "outcome": "failed", "duration": 0.1,
         "message": "AssertionError: upstream s3cr3t not in front.conf"},
        {"role": "base", "check": "test_chrony", "outcome": "failed", "duration": 0.1, "message": "not running"}]},
}}


def test_evidence_becomes_check_results_with_secrets_redacted() -> None:
    results = checks_from_evidence(EVIDENCE, ["s3cr3t"])
    assert [(r.host, r.role, r.check, r.outcome) for r in results] == [
        ("10.78.0.11", "nginx", "test_site", "failed"), ("10.78.0.11", "base", "test_chrony", "failed"),
        ("10.78.0.12", "postgresql", "test_listens", "passed")]
    assert results[0].message == f"AssertionError: upstream {REDACTED} not in front.conf"


def test_the_first_failed_check_explains_a_failed_job() -> None:
    results = checks_from_evidence(EVIDENCE)
    outcome = verification_outcome(results, {"10.78.0.11": "web-1"})
    assert outcome == Outcome(JobStatus.FAILED, "check test_site of role nginx failed on web-1: AssertionError: "
                                                "upstream s3cr3t not in front.conf (and 1 more)")
    assert verification_outcome(results[2:], {}) == Outcome(JobStatus.SUCCESSFUL, "")
    assert verification_outcome([], {}).explanation == "verification ran no check"
