"""Pure rules of running a migration: its states and the controls allowed in each, and the playbook jobs each step
runs (hosts, groups, variables), built from the system's plan (domain.SystemPlan.to_dict()), the servers that
provision made and the wave's inputs for the system (where its legacy side is, what to deploy, what data moves).

Standard library only, like domain.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from controlplane.inventory.domain import ROLES, StepError
from controlplane.inventory.planning import Step
from controlplane.inventory.windows import MaintenanceWindow


class State(StrEnum):
    PENDING = "pending"  # in a wave that has not run yet
    QUEUED = "queued"  # its workflow waits for a place in its agency's queue
    RUNNING = "running"
    AWAITING_APPROVAL = "awaiting_approval"  # everything before cutover is done; an operator approves it
    # Held outside the queue (no workflow, no queue slot) until what they wait for comes; see `cutover_hold`.
    WAITING = "waiting"  # approved: its cutover waits for its dependencies' cutover or its maintenance window
    BLOCKED = "blocked"  # approved: a dependency failed, was canceled or rolled back; it goes on once that is cut over
    CUT_OVER = "cut_over"  # its users are on the new side; the legacy side is kept until the soak ends, then retire
    PAUSED = "paused"
    FAILED = "failed"
    CANCELED = "canceled"
    SUCCEEDED = "succeeded"
    ROLLING_BACK = "rolling_back"
    ROLLED_BACK = "rolled_back"
    ROLLBACK_FAILED = "rollback_failed"

    @property
    def active(self) -> bool:
        """A workflow of it is queued or running."""
        return self in (State.QUEUED, State.RUNNING, State.ROLLING_BACK)

    @property
    def final(self) -> bool:
        return self in (State.SUCCEEDED, State.ROLLED_BACK)


class Control(StrEnum):
    RUN = "run"
    PAUSE = "pause"
    RESUME = "resume"
    CANCEL = "cancel"
    RETRY = "retry"
    APPROVE = "approve"
    ROLLBACK = "rollback"


HELD = (State.WAITING, State.BLOCKED, State.CUT_OVER)

# Which controls each state accepts. A pause or a cancel of a queued or running migration is a request that the
# workflow takes up between steps (cancel also stops the playbook job running); the rest act at once.
ALLOWED: dict[State, frozenset[Control]] = {
    State.PENDING: frozenset({Control.RUN, Control.CANCEL}),
    State.QUEUED: frozenset({Control.PAUSE, Control.CANCEL}),
    State.RUNNING: frozenset({Control.PAUSE, Control.CANCEL}),
    State.AWAITING_APPROVAL: frozenset({Control.APPROVE, Control.CANCEL, Control.ROLLBACK}),
    State.WAITING: frozenset({Control.APPROVE, Control.CANCEL, Control.ROLLBACK}),  # approve: force the window
    State.BLOCKED: frozenset({Control.CANCEL, Control.ROLLBACK}),
    State.CUT_OVER: frozenset({Control.APPROVE, Control.ROLLBACK}),  # approve: retire before the soak ends
    State.PAUSED: frozenset({Control.RESUME, Control.CANCEL, Control.ROLLBACK}),
    State.FAILED: frozenset({Control.RETRY, Control.CANCEL, Control.ROLLBACK}),
    State.CANCELED: frozenset({Control.RETRY, Control.ROLLBACK}),
    State.SUCCEEDED: frozenset(),
    State.ROLLING_BACK: frozenset(),
    State.ROLLED_BACK: frozenset(),
    State.ROLLBACK_FAILED: frozenset({Control.ROLLBACK}),
}


def refusal(state: State | str, control: Control | str) -> str | None:
    """Why `control` is refused in `state`; None when it is allowed."""
    state, control = State(state), Control(control)
    if control in ALLOWED[state]:
        return None
    accepted = sorted(ALLOWED[state])
    hint = f"it accepts {', '.join(accepted)}" if accepted else "it accepts no control"
    return f"cannot {control} a migration that is {state.value.replace('_', ' ')}: {hint}"


# --------------------------------------------------------------------------- holds outside the queue

# A dependency in one of these states will not be cut over unless an operator acts: its dependents are blocked.
_STOPPED = {State.FAILED: "failed", State.CANCELED: "was canceled", State.ROLLING_BACK: "is rolling back",
            State.ROLLED_BACK: "was rolled back", State.ROLLBACK_FAILED: "could not be rolled back"}


@dataclass(frozen=True)
class Hold:
    """Why an approved migration does not run its next step now, and the state it waits in (outside the queue)."""

    state: State
    reason: str
    until: datetime | None = None  # when time alone lets it go on (a window opens, a soak ends)


@dataclass(frozen=True)
class Dependency:
    code: str
    state: State
    cut_over: bool


def cutover_hold(dependencies: Sequence[Dependency], *, window: MaintenanceWindow | None, local_now: datetime,
                 window_forced: bool = False) -> Hold | None:
    """What an approved cutover waits for, in local time: its dependencies first (blocked when one of them has
    stopped), then its maintenance window unless an operator forced it; None: it runs now."""
    stopped = [f"{d.code} {_STOPPED[d.state]}" for d in dependencies if not d.cut_over and d.state in _STOPPED]
    if stopped:
        return Hold(State.BLOCKED, f"cutover blocked: {', '.join(stopped)}; it goes on once "
                                   f"{'they are' if len(stopped) > 1 else 'it is'} cut over")
    waiting = [d.code for d in dependencies if not d.cut_over]
    if waiting:
        return Hold(State.WAITING, f"cutover waits for {', '.join(waiting)} to be cut over first")
    if window is not None and not window_forced and not window.contains(local_now):
        opens = window.next_opening(local_now)
        return Hold(State.WAITING, f"cutover waits for its maintenance window {window}: it opens "
                                   f"{opens:%Y-%m-%d %H:%M} ({opens.tzname()})", until=opens)
    return None


CLOUD_RETRY_FIRST_SECONDS = 15
CLOUD_RETRY_MAX_SECONDS = 300


def cloud_retry_delay(waits: int) -> int:
    """Seconds before the `waits`-th try of a step the cloud did not answer: 15, 30, 60 ... up to 5 minutes."""
    return min(CLOUD_RETRY_FIRST_SECONDS * 2 ** max(waits - 1, 0), CLOUD_RETRY_MAX_SECONDS)


def cloud_hold(error: str, *, local_retry: datetime, until: datetime) -> Hold:
    return Hold(State.WAITING, f"waiting for the cloud: {error}; it tries again at "
                               f"{local_retry:%Y-%m-%d %H:%M:%S} ({local_retry.tzname()})", until=until)


def soak_hold(soak_until: datetime, *, now: datetime, local_until: datetime) -> Hold | None:
    """A cut-over system keeps its legacy side until the soak ends (an operator may approve retiring earlier)."""
    if now >= soak_until:
        return None
    return Hold(State.CUT_OVER, f"cut over: the legacy side is kept (soak) until {local_until:%Y-%m-%d %H:%M} "
                                f"({local_until.tzname()}), then retired; approve to retire it earlier",
                until=soak_until)


def retry_from(steps: Sequence[str], done: Sequence[str], from_step: str | None) -> list[str]:
    """The steps still counted done when a retry starts at `from_step` (default: the first not done)."""
    if from_step is None:
        return list(done)
    if from_step not in steps:
        raise StepError(f"{from_step} is not a step of this migration ({', '.join(steps)})", field="from_step")
    if steps.index(from_step) > len(done):
        raise StepError(f"{from_step} cannot run before {steps[len(done)]} is done", field="from_step")
    if Step.RETIRE.value in done:
        raise StepError("retire is done: the migration is complete", field="from_step")
    return list(done[:steps.index(from_step)])


# --------------------------------------------------------------------------- the jobs of the steps


@dataclass(frozen=True)
class JobSpec:
    """One playbook job of a step (the fields of automation.schemas.JobIn the engine sets)."""

    playbook: str
    hosts: tuple[dict[str, Any], ...]  # {name, address, groups, vars}
    extravars: dict[str, Any]
    verify: bool
    what: str  # for events: "configure minwon-app-1, minwon-db-1"
    secrets: tuple[str, ...] = ("postgresql_db_owner_password",)
    fetch: bool = False  # it brings files back to the control plane (into a directory the engine names)


@dataclass(frozen=True)
class Inputs:
    """The wave's inputs for one system (schemas.SystemInputs, as plain data).

    front: the nginx host that serves the system's users ({name, address, vars}); cutover points it at the new
    servers, rollback back at `legacy_upstreams`. artifact: what app_deploy installs ({kind, name, src | url,
    checksum, health_content}). data: where the data comes from ({format, dump_src | csv_files, schema_src,
    manifest_src | manifest}). network_cidr: the agency network's range (PostgreSQL admits the app servers
    from it).
    """

    front: Mapping[str, Any] | None = None
    legacy_upstreams: tuple[str, ...] = ()
    artifact: Mapping[str, Any] | None = None
    data: Mapping[str, Any] | None = None
    network_cidr: str = ""
    variables: Mapping[str, Any] = field(default_factory=dict)


def inputs_of(data: Mapping[str, Any]) -> Inputs:
    return Inputs(front=data.get("front"), legacy_upstreams=tuple(data.get("legacy_upstreams") or ()),
                  artifact=data.get("artifact"), data=data.get("data"), network_cidr=data.get("network_cidr", ""),
                  variables=dict(data.get("variables") or {}))


def missing_inputs(plan: Mapping[str, Any], inputs: Inputs) -> list[tuple[str, str]]:
    """(field, reason) for each input the system's steps need and the wave does not give."""
    roles = {role for server in plan["servers"] for role in server["roles"]}
    problems: list[tuple[str, str]] = []
    if "app_deploy" in roles and not inputs.artifact:
        problems.append(("artifact", "the system deploys an application (app_deploy): give its artifact "
                                     "(kind, name, src or url, checksum)"))
    if plan["data_moves"] and not inputs.data:
        problems.append(("data", f"{len(plan['data_moves'])} database(s) move: give the data's source "
                                 "(format, dump_src or csv_files, manifest_src or manifest)"))
    if _backends(plan) and not inputs.front:
        problems.append(("front", "cutover switches the users' nginx front: give it (name, address)"))
    if inputs.front and not inputs.legacy_upstreams:
        problems.append(("legacy_upstreams", "rollback points the front back at the legacy backends: give them "
                                             "('10.0.0.5:8080')"))
    return problems


def database_owner(plan: Mapping[str, Any]) -> str:
    return f"{database(plan)}_app"


def database(plan: Mapping[str, Any]) -> str:
    """The name of the system's database on its new db server."""
    moves = plan["data_moves"]
    return moves[0]["database"] if moves else str(plan["system"]).replace("-", "_")


def _servers(plan: Mapping[str, Any], tier: str) -> list[Mapping[str, Any]]:
    return [s for s in plan["servers"] if s["tier"] == tier]


def _backends(plan: Mapping[str, Any]) -> list[tuple[str, int]]:
    """The new servers the front forwards to: the web tier when there is one, else the app tier (Tomcat)."""
    web = _servers(plan, "web")
    if web:
        return [(s["name"], 80) for s in web]
    return [(s["name"], 8080) for s in _servers(plan, "app") if "tomcat" in s["roles"]]


def upstreams(plan: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]]) -> list[str]:
    return [f"{resources[name]['address']}:{port}" for name, port in _backends(plan)]


def common_vars(plan: Mapping[str, Any], inputs: Inputs) -> dict[str, Any]:
    """Variables every job of the system gets."""
    variables: dict[str, Any] = {"migration_system": plan["system"]}
    if any("postgresql" in s["roles"] for s in plan["servers"]):
        variables |= {"postgresql_db_name": database(plan), "postgresql_db_owner": database_owner(plan)}
        if _servers(plan, "app") and inputs.network_cidr:
            # The app servers reach the database over the agency network.
            variables |= {"postgresql_listen_addresses": ["*"], "postgresql_hba_entries": [
                {"type": "host", "database": database(plan), "user": database_owner(plan),
                 "address": inputs.network_cidr,
                 "method": "scram-sha-256"},
                {"type": "host", "database": "all", "user": "all", "address": "127.0.0.1/32",
                 "method": "scram-sha-256"}]}
    if any("tomcat" in s["roles"] for s in plan["servers"]):
        ram = min(s["flavor"]["ram_mb"] for s in plan["servers"] if "tomcat" in s["roles"])
        variables |= {"tomcat_heap_min": "64m", "tomcat_heap_max": f"{max(128, ram // 4)}m"}
    return variables | dict(inputs.variables)


def _host_vars(server: Mapping[str, Any], plan: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]],
               inputs: Inputs) -> dict[str, Any]:
    variables: dict[str, Any] = {}
    if "app_deploy" in server["roles"] and inputs.artifact:
        artifact = inputs.artifact
        kind = artifact.get("kind", "war")
        variables |= {"app_deploy_kind": kind, "app_deploy_name": artifact["name"],
                      "app_deploy_artifact_checksum": artifact["checksum"]}
        variables["app_deploy_artifact_url" if artifact.get("url") else "app_deploy_artifact_src"] = \
            artifact.get("url") or artifact["src"]
        if artifact.get("health_content"):
            context = "" if artifact["name"] == "ROOT" else f"{artifact['name']}/"  # a WAR named ROOT serves /
            base = f"http://127.0.0.1:8080/{context}" if kind == "war" else "http://127.0.0.1/"
            variables |= {"app_deploy_health_url": base, "app_deploy_health_content": artifact["health_content"]}
    if "nginx" in server["roles"] and server["tier"] == "web":
        app = [s for s in _servers(plan, "app") if "tomcat" in s["roles"]]
        if app:  # a web tier in front of an app tier proxies to it
            variables["nginx_upstreams"] = [f"{resources[s['name']]['address']}:8080" for s in app]
    return variables


def _hosts(plan: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]], inputs: Inputs,
           roles: set[str], tiers: set[str] | None = None) -> tuple[dict[str, Any], ...]:
    return tuple({"name": s["name"], "address": resources[s["name"]]["address"],
                  "groups": [r for r in s["roles"] if r != "base" and r in roles],
                  "vars": _host_vars(s, plan, resources, inputs)}
                 for s in plan["servers"] if tiers is None or s["tier"] in tiers)


def step_jobs(step: Step | str, plan: Mapping[str, Any], resources: Mapping[str, Mapping[str, Any]],
              inputs: Inputs, *, rollback: bool = False) -> tuple[JobSpec, ...]:
    """The playbook jobs of a step (of its undo when `rollback`); empty for steps that run none."""
    step = Step(step)
    common = common_vars(plan, inputs)
    names = ", ".join(s["name"] for s in plan["servers"])
    if step is Step.CONFIGURE and not rollback:
        roles = {r for s in plan["servers"] for r in s["roles"]} - {"data_migration"}
        ordered = [r for r in ROLES if r in roles]
        return (JobSpec("migrate_system.yml", _hosts(plan, resources, inputs, roles),
                        common | {"migration_steps": ordered}, verify=False, what=f"configure {names}"),)
    if step is Step.MOVE_DATA and not rollback:
        data = dict(inputs.data or {})
        move_vars = {"data_migration_db_name": database(plan), "data_migration_db_owner": database_owner(plan),
                     "data_migration_format": data.get("format", "sql")}
        for key in ("dump_src", "schema_src", "manifest_src", "manifest", "csv_files"):
            if data.get(key):
                move_vars[f"data_migration_{key}"] = data[key]
        return (JobSpec("migrate_system.yml", _hosts(plan, resources, inputs, {"data_migration"}, {"db"}),
                        common | move_vars | {"migration_steps": ["data_migration"]}, verify=False,
                        what=f"move data into {database(plan)}"),)
    if step is Step.MOVE_DATA and rollback:  # before its server goes: the database as its users left it
        (move,) = step_jobs(Step.MOVE_DATA, plan, resources, inputs)
        return (JobSpec("migrate_system.yml", move.hosts, move.extravars | {"data_migration_action": "dump"},
                        verify=False, what=f"dump {database(plan)} before its server is deleted", secrets=(),
                        fetch=True),)
    if step is Step.VERIFY and not rollback:
        roles = {r for s in plan["servers"] for r in s["roles"]}
        variables = dict(common)
        if plan["data_moves"]:  # the data checks read the manifest and the database's name
            variables |= step_jobs(Step.MOVE_DATA, plan, resources, inputs)[0].extravars
        variables.pop("migration_steps", None)
        return (JobSpec("verify.yml", _hosts(plan, resources, inputs, roles), variables, verify=True,
                        what=f"verify {names}"),)
    if step is Step.CUTOVER and inputs.front:
        targets = list(inputs.legacy_upstreams) if rollback else upstreams(plan, resources)
        front = inputs.front
        host = {"name": front["name"], "address": front["address"], "groups": ["nginx"],
                "vars": {**dict(front.get("vars") or {}), "nginx_upstreams": targets}}
        side = "the legacy backends" if rollback else "the new servers"
        return (JobSpec("migrate_system.yml", (host,), {"migration_system": plan["system"],
                                                        "migration_steps": ["nginx"]},
                        verify=True, what=f"point the front {front['name']} at {side} ({', '.join(targets)})",
                        secrets=()),)
    return ()


def owner_tag(migration_id: str, server: str) -> str:
    """The cp_owner of a migration's server: a retry finds it instead of creating a twin."""
    return f"migration/{migration_id}/{server}"
