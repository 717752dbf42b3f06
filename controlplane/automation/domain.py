"""Pure rules of playbook jobs: job states, the one mapping from ansible-runner's outcome, events, redaction.

Standard library only; controlplane.automation.runner feeds it ansible-runner's raw dicts.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
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


# -- jobs as the control plane requests them -------------------------------------------------------------------------

# The playbooks a job may run, and the roles in the order site.yml and migrate_system.yml apply them.
PLAYBOOKS = ("site.yml", "migrate_system.yml", "verify.yml")
ROLES = ("base", "postgresql", "data_migration", "tomcat", "nginx", "app_deploy", "sip_registrar", "janus_bridge")
_INVENTORY_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Connection settings are the control plane's: a variable such as ansible_ssh_common_args (ProxyCommand) or
# ansible_connection=local would run commands on the control plane's own machine. cp_ ones too: cp_fetch_dir says
# where a job may write files on the control plane's machine.
_RESERVED_PREFIXES = ("ansible_", "check_", "cp_")
FETCH_DIR_VARIABLE = "cp_fetch_dir"
# Extra variables are stored and shown: a name like these belongs in the job's secrets.
_SECRET_HINTS = ("password", "secret", "token", "private_key")


class JobSpecError(ValueError):
    """A job request that cannot run as given; `field` names the offending input."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


@dataclass(frozen=True)
class JobHost:
    name: str  # the inventory hostname
    address: str  # what SSH connects to
    groups: tuple[str, ...] = ()  # role groups (see ROLES); every host also gets base
    vars: Mapping[str, Any] = field(default_factory=dict)


def variable_problems(values: Mapping[str, Any], where: str, *, secret: bool = False,
                      reserved: tuple[str, ...] = ()) -> list[JobSpecError]:
    """Variable names a job may set: identifiers, none of Ansible's connection settings (nor the `reserved` prefixes
    of the caller), and secret-looking ones only among the secrets. One error per bad name."""
    problems = []
    for name in values:
        field = f"{where}.{name}"
        if not _VARIABLE.fullmatch(name):
            problems.append(JobSpecError(field, "not a valid variable name (letters, digits and '_')"))
        elif name.startswith(_RESERVED_PREFIXES):
            problems.append(JobSpecError(field, "connection, check and cp_ settings are set by the control plane"))
        elif reserved and name.startswith(reserved):
            problems.append(JobSpecError(field, f"names starting {' or '.join(reserved)} are set by the control "
                                                "plane"))
        elif not secret and any(hint in name.lower() for hint in _SECRET_HINTS):
            problems.append(JobSpecError(field, "looks like a secret: pass it in secrets (never stored in clear)"))
    return problems


def check_variables(values: Mapping[str, Any], where: str, *, secret: bool = False) -> None:
    """The first of variable_problems, raised."""
    for problem in variable_problems(values, where, secret=secret):
        raise problem


def check_limit(limit: str | None, hosts: Sequence[JobHost]) -> None:
    """A job's --limit names only its own hosts and groups (`web-1,db-1`, `tomcat:!web-2`): no patterns, and never
    Ansible's `@file` form, which would read a file of the control plane's machine."""
    if limit is None:
        return
    known = {"all", *(h.name for h in hosts), *(group for h in hosts for group in h.groups)}
    for item in re.split(r"[,:]", limit):
        name = item.removeprefix("!").removeprefix("&")
        if name not in known:
            raise JobSpecError("limit", f"{item!r} is not one of the job's hosts or groups "
                                        f"({', '.join(sorted(known))}); separate names with ',' or ':', "
                                        "prefix '!' to leave one out")


def map_controller_files(values: Mapping[str, Any], where: str,
                         resolve: Callable[[str, Any], Any]) -> dict[str, Any]:
    """A copy of `values` in which every variable naming a file the roles copy from the control plane's machine
    (`src` and `*_src`, at any depth: app_deploy_artifact_src, data_migration_csv_files[].src ...) is replaced by
    resolve(field, value); empty ones mean unset and stay. Fields read like the request's: `extravars.x.0.src`."""
    def walk(value: Any, here: str, key: str | None) -> Any:
        if key is not None and (key == "src" or key.endswith("_src")) and value not in ("", None):
            return resolve(here, value)
        if isinstance(value, Mapping):
            return {name: walk(item, f"{here}.{name}", name) for name, item in value.items()}
        if isinstance(value, list):
            return [walk(item, f"{here}.{index}", None) for index, item in enumerate(value)]
        return value

    return {name: walk(value, f"{where}.{name}", name) for name, value in values.items()}


def validate_job(playbook: str, hosts: Sequence[JobHost], extravars: Mapping[str, Any],
                 secret_names: Iterable[str], limit: str | None = None) -> None:
    """Everything about a job request that can be judged without the database or the hosts."""
    if playbook not in PLAYBOOKS:
        raise JobSpecError("playbook", f"unknown playbook {playbook!r}; one of {', '.join(PLAYBOOKS)}")
    if not hosts:
        raise JobSpecError("hosts", "at least one host is needed")
    seen: set[str] = set()
    for index, host in enumerate(hosts):
        where = f"hosts.{index}"
        if not _INVENTORY_NAME.fullmatch(host.name):
            raise JobSpecError(f"{where}.name", "1-63 letters, digits, '.', '_' or '-', first a letter or digit")
        if host.name in seen:
            raise JobSpecError(f"{where}.name", f"host {host.name!r} is listed twice")
        seen.add(host.name)
        if not _INVENTORY_NAME.fullmatch(host.address):
            raise JobSpecError(f"{where}.address", "an IPv4 address or a host name")
        unknown = [group for group in host.groups if group not in ROLES]
        if unknown:
            raise JobSpecError(f"{where}.groups", f"unknown group {unknown[0]!r}; groups are the roles "
                                                  f"{', '.join(ROLES)}")
        check_variables(host.vars, f"{where}.vars")
    check_variables(extravars, "extravars")
    secrets = list(secret_names)
    check_variables(dict.fromkeys(secrets), "secrets", secret=True)
    clash = sorted(set(secrets) & set(extravars))
    if clash:
        raise JobSpecError(f"secrets.{clash[0]}", "also given in extravars; give it once, as a secret")
    check_limit(limit, hosts)
    steps = extravars.get("migration_steps")
    if steps is not None and (not isinstance(steps, list) or any(step not in ROLES for step in steps)):
        raise JobSpecError("extravars.migration_steps", f"a list of roles out of {', '.join(ROLES)}")


def roles_of(playbook: str, host: JobHost, extravars: Mapping[str, Any]) -> tuple[str, ...]:
    """The roles the playbook applies to (or, for verify.yml, checks on) the host, in the order it applies them."""
    groups = {"base", *host.groups}
    steps = set(extravars.get("migration_steps") or ROLES) if playbook == "migrate_system.yml" else set(ROLES)
    return tuple(role for role in ROLES if role in groups and role in steps)


def inventory(hosts: Iterable[JobHost], *, user: str) -> dict[str, Any]:
    """The job's inventory: every host under `all` with its address and variables, and in its role groups."""
    hosts = list(hosts)
    children: dict[str, Any] = {group: {"hosts": {h.name: {} for h in hosts if group in h.groups}}
                                for group in ROLES[1:] if any(group in h.groups for h in hosts)}
    return {"all": {
        "hosts": {h.name: {**h.vars, "ansible_host": h.address, "ansible_user": user} for h in hosts},
        "children": children,
    }}


def check_vars(playbook: str, hosts: Iterable[JobHost], extravars: Mapping[str, Any]) -> dict[str, Any]:
    """What the testinfra checks read (playbooks/checks/conftest.py): the job's variables, and per host address its
    own variables and the roles to check. Never the secrets: the checks do not need them."""
    return {"vars": dict(extravars),
            "hosts": {h.address: {**h.vars, "check_roles": list(roles_of(playbook, h, extravars))} for h in hosts}}


@dataclass(frozen=True)
class CheckResult:
    host: str  # the host's address, as the checks saw it
    role: str | None
    check: str
    outcome: str  # passed | failed | skipped
    duration: float
    message: str


def checks_from_evidence(document: Mapping[str, Any], secrets: Iterable[str] = ()) -> list[CheckResult]:
    """The per-host results of an evidence file (playbooks/checks/conftest.py --evidence), messages redacted."""
    secrets = list(secrets)
    return [CheckResult(host=address, role=check.get("role"), check=str(check.get("check", "")),
                        outcome=str(check.get("outcome", "failed")), duration=float(check.get("duration") or 0),
                        message=redact(str(check.get("message") or ""), secrets))
            for address, entry in sorted((document.get("hosts") or {}).items())
            for check in entry.get("checks", [])]


def verification_outcome(results: Sequence[CheckResult], names: Mapping[str, str]) -> Outcome:
    """A job whose checks all passed stays successful; one failed check fails it, naming the check and host.

    `names` maps host addresses to inventory names, so the explanation reads like the playbook's own."""
    failed = [r for r in results if r.outcome == "failed"]
    if not results:
        return Outcome(JobStatus.FAILED, "verification ran no check")
    if not failed:
        return Outcome(JobStatus.SUCCESSFUL, "")
    first = failed[0]
    role = f" of role {first.role}" if first.role else ""
    more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
    reason = f": {first.message}" if first.message else ""
    return Outcome(JobStatus.FAILED,
                   f"check {first.check}{role} failed on {names.get(first.host, first.host)}{reason}{more}")


# --------------------------------------------------------------------------- what the runners take and give


@dataclass(frozen=True)
class PlaybookJob:
    playbook: str  # relative to playbooks/
    inventory: Mapping[str, Any]  # an inventory structure ({"all": {"hosts": ...}})
    extravars: Mapping[str, Any] = field(default_factory=dict)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)  # extra vars that are secret
    private_key: str | None = field(default=None, repr=False)  # SSH private key for the hosts
    timeout_seconds: float | None = None
    limit: str | None = None
    # Host keys in known_hosts form: None leaves SSH host key checking to ansible.cfg and the inventory; a text
    # (even empty) makes the job check keys against a known_hosts file of its own, where keys it meets for the
    # first time are added (trust on first use, per job) and returned in RunResult.known_hosts.
    known_hosts: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class RunResult:
    outcome: Outcome
    rc: int | None
    events: tuple[JobEvent, ...]
    known_hosts: str | None = field(default=None, repr=False)  # the job's known_hosts after the run


class VerificationError(RuntimeError):
    """The checks could not be run at all (not: a check failed); the message says why, without secrets."""


@dataclass(frozen=True)
class CheckRun:
    addresses: tuple[str, ...]
    roles: tuple[str, ...]  # the check modules to run (test_<role>.py); each host's own roles are in check_vars
    check_vars: Mapping[str, Any]
    user: str
    private_key: str = field(repr=False)
    known_hosts: str = field(default="", repr=False)  # empty: any host key is accepted (with a warning)
    timeout_seconds: float = 600
