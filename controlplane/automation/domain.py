"""Pure rules of playbook jobs: job states, the one mapping from ansible-runner's outcome, events, redaction.

Standard library only; controlplane.automation.runner feeds it ansible-runner's raw dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

REDACTED = "********"


class JobStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCESSFUL = "successful"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def finished(self) -> bool:
        return self in (JobStatus.SUCCESSFUL, JobStatus.FAILED, JobStatus.CANCELED)


@dataclass(frozen=True)
class Outcome:
    status: JobStatus
    explanation: str


def job_outcome(runner_status: str, rc: int | None, *, timeout_seconds: float | None,
                failures: Iterable[JobEvent] = ()) -> Outcome:
    """The single place where ansible-runner's status becomes the control plane's job status."""
    failed = [e for e in failures if e.status in ("failed", "unreachable")]
    if runner_status == "successful" and not failed:
        return Outcome(JobStatus.SUCCESSFUL, "")
    if runner_status == "canceled":
        return Outcome(JobStatus.CANCELED, "canceled on request")
    if runner_status == "timeout":
        limit = f" of {timeout_seconds:.0f} s" if timeout_seconds else ""
        return Outcome(JobStatus.FAILED, f"timed out: the playbook ran past the job's time limit{limit}")
    if failed:
        first = failed[0]
        where = f"task '{first.task}' on {first.host}" if first.task else f"host {first.host}"
        what = "unreachable" if first.status == "unreachable" else "failed"
        reason = f": {first.message}" if first.message else ""
        more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
        return Outcome(JobStatus.FAILED, f"{where} {what}{reason}{more}")
    return Outcome(JobStatus.FAILED, f"ansible-runner ended with status {runner_status} (rc {rc})")


# Runner event names that describe one host's result of one task.
_HOST_RESULTS = {
    "runner_on_ok": "ok",
    "runner_on_failed": "failed",
    "runner_on_unreachable": "unreachable",
    "runner_on_skipped": "skipped",
    "runner_item_on_failed": "failed",
}
_ANNOUNCEMENTS = {"playbook_on_play_start": "play", "playbook_on_task_start": "task", "playbook_on_stats": "stats"}


@dataclass(frozen=True)
class JobEvent:
    seq: int
    kind: str  # ok | failed | unreachable | skipped | play | task | stats
    host: str | None
    task: str | None
    status: str  # the host's result for result events, else the kind
    changed: bool
    duration: float | None
    message: str  # the module's message or the failure reason, redacted


def event_from_runner(raw: Mapping[str, Any], secrets: Iterable[str] = ()) -> JobEvent | None:
    """A stored job event from one ansible-runner event dict; None for events not worth keeping (verbose output)."""
    name = raw.get("event", "")
    data = raw.get("event_data") or {}
    if name == "runner_on_failed" and data.get("ignore_errors"):
        name = "runner_on_ok"  # an ignored failure does not fail the host (ansible's recap counts it as ok)
    if name in _HOST_RESULTS:
        result = data.get("res") or {}
        status = _HOST_RESULTS[name]
        # A failed item is reported again by its task's runner_on_failed: keep the task-level event only.
        if name == "runner_item_on_failed":
            return None
        message = _message(result) if status in ("failed", "unreachable") else str(result.get("msg") or "")
        return JobEvent(seq=int(raw.get("counter", 0)), kind=status, host=data.get("host"), task=data.get("task"),
                        status=status, changed=bool(result.get("changed")), duration=data.get("duration"),
                        message=redact(message, secrets))
    if name in _ANNOUNCEMENTS:
        kind = _ANNOUNCEMENTS[name]
        label = data.get("play") if kind == "play" else data.get("task") if kind == "task" else None
        return JobEvent(seq=int(raw.get("counter", 0)), kind=kind, host=None, task=label, status=kind,
                        changed=False, duration=None, message="")
    return None


def _message(result: Mapping[str, Any]) -> str:
    if result.get("_ansible_no_log") or result.get("censored"):
        return "the output has been hidden (no_log)"
    parts = [str(result[k]) for k in ("msg", "stderr", "reason") if result.get(k)]
    return " | ".join(" ".join(p.split()) for p in parts)[:500]


def redact(text: str, secrets: Iterable[str]) -> str:
    """Every secret value replaced, longest first (so one secret inside another leaves no fragment)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


@dataclass(frozen=True)
class HostStats:
    ok: int = 0
    changed: int = 0
    failed: int = 0
    unreachable: int = 0
    skipped: int = 0


def host_stats(events: Iterable[JobEvent]) -> dict[str, HostStats]:
    """Per-host totals of task results (what ansible's recap prints), from the stored events."""
    totals: dict[str, dict[str, int]] = {}
    for event in events:
        if event.host is None or event.kind not in ("ok", "failed", "unreachable", "skipped"):
            continue
        counts = totals.setdefault(event.host, {"ok": 0, "changed": 0, "failed": 0, "unreachable": 0, "skipped": 0})
        counts[event.kind] += 1
        counts["changed"] += int(event.changed)
    return {host: HostStats(**counts) for host, counts in sorted(totals.items())}
