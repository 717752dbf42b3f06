"""Pure rules of playbook jobs: runner outcome -> job status, runner events -> stored events, redaction."""

from __future__ import annotations

from controlplane.automation.domain import (
    REDACTED,
    HostStats,
    JobEvent,
    JobStatus,
    event_from_runner,
    host_stats,
    job_outcome,
    redact,
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
