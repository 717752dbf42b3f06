"""Migrations on the durable engine: each migration attempt is a workflow on the agency queue (partitioned by
agency: at most CP_MIGRATION_AGENCY_CONCURRENCY of one agency run at once), whose provision step runs as a child
workflow on the cloud's queue (at most CP_MIGRATION_CLOUD_CONCURRENCY systems create servers at once) and whose
playbook steps run as child workflows on the playbook queue that jobs share; a rollback is a workflow of its own
on the agency queue.

Every step is a durable step: after a crash, the engine recovers the workflows that were running, replays the
steps already recorded and goes on with the first that was not. The steps themselves (controlplane.waves.flows)
also look at the database before acting, so a step cut short is safe to run again.
"""

from __future__ import annotations

import logging
from typing import Any

from controlplane import workflows
from controlplane.automation import flows as job_flows
from controlplane.config import Settings
from controlplane.waves import flows
from controlplane.waves.metrics import MigrationMetrics

log = logging.getLogger(__name__)


def cloud_queue(cloud: str) -> str:
    return f"cp-provision-{cloud}"


def queues(settings: Settings) -> list[workflows.Queue]:
    return [workflows.Queue(flows.AGENCY_QUEUE, per_partition=settings.migration_agency_concurrency),
            workflows.Queue(cloud_queue(settings.cloud), limit=settings.migration_cloud_concurrency)]


@workflows.workflow(flows.MIGRATION_WORKFLOW)
def migration_workflow(migration_id: str) -> str:
    """One attempt of a migration: its next steps until it ends, waits for approval, pauses or fails."""
    try:
        return _steps_of(migration_id)
    except Exception as exc:  # the engine's own error (a database refusing a write...): never leave it "running"
        log.exception("migration %s: its workflow failed", migration_id)
        return fail(migration_id, f"the durable engine failed: {type(exc).__name__}: {exc}")


def _steps_of(migration_id: str) -> str:
    while True:
        decision = decide(migration_id)
        if decision["action"] == "end":
            return str(decision["outcome"])
        step = str(decision["step"])
        if step == "provision":
            outcome = workflows.run_child(cloud_queue(decision["cloud"]), provision_workflow, migration_id)
        elif step in flows.PLAYBOOK_STEPS:
            outcome = workflows.run_child(job_flows.PLAYBOOK_QUEUE, playbook_step_workflow, migration_id, step)
        else:
            outcome = run_step(migration_id, step)
        if step == "cutover" or outcome != "succeeded":  # its dependents go on, or are blocked
            flows.submit(workflows.context(), release_dependents(migration_id))


@workflows.workflow("cp.provision")
def provision_workflow(migration_id: str) -> str:
    return run_step(migration_id, "provision")


@workflows.workflow("cp.migration_playbooks")
def playbook_step_workflow(migration_id: str, step: str) -> str:
    return run_step(migration_id, step)


@workflows.workflow("cp.rollback_playbooks")
def playbook_undo_workflow(rollback_id: str, step: str) -> str:
    return undo_step(rollback_id, step)


@workflows.workflow(flows.ROLLBACK_WORKFLOW)
def rollback_workflow(rollback_id: str) -> str:
    try:
        for step in rollback_steps(rollback_id):
            if step in flows.PLAYBOOK_STEPS:
                outcome = workflows.run_child(job_flows.PLAYBOOK_QUEUE, playbook_undo_workflow, rollback_id, step)
            else:
                outcome = undo_step(rollback_id, step)
            if outcome != "succeeded":
                return "failed"
        return finish_rollback(rollback_id)
    except Exception as exc:
        log.exception("rollback %s: its workflow failed", rollback_id)
        return fail_rollback(rollback_id, f"the durable engine failed: {type(exc).__name__}: {exc}")


@workflows.step("cp.fail")
def fail(migration_id: str, error: str) -> str:
    flows.fail_unexpectedly(workflows.context(), migration_id, error)
    return "failed"


@workflows.step("cp.fail_rollback")
def fail_rollback(rollback_id: str, error: str) -> str:
    flows.fail_rollback_unexpectedly(workflows.context(), rollback_id, error)
    return "failed"


@workflows.step("cp.decide")
def decide(migration_id: str) -> dict[str, Any]:
    ctx = workflows.context()
    decision = flows.decide(ctx, migration_id, attempt=workflows.current_workflow_id())
    if decision.action == "end":
        flows.count_states(ctx)
    return {"action": decision.action, "step": decision.step, "outcome": decision.outcome,
            "cloud": ctx.settings.cloud}


@workflows.step("cp.step")
def run_step(migration_id: str, step: str) -> str:
    ctx = workflows.context()
    agency = flows.agency_of(ctx, migration_id)
    queue = "cloud" if step == "provision" else "agency"
    gauge = ctx.metrics.of(MigrationMetrics).in_flight.labels(queue, agency)
    gauge.inc()
    try:
        return flows.run_step(ctx, migration_id, step)
    finally:
        gauge.dec()
        flows.count_states(ctx)


@workflows.step("cp.release_dependents")
def release_dependents(migration_id: str) -> list[tuple[str, str, str]]:
    return flows.release_dependents(workflows.context(), migration_id)


@workflows.step("cp.rollback_steps")
def rollback_steps(rollback_id: str) -> list[str]:
    return flows.rollback_plan(workflows.context(), rollback_id)


@workflows.step("cp.undo")
def undo_step(rollback_id: str, step: str) -> str:
    ctx = workflows.context()
    try:
        return flows.undo_step(ctx, rollback_id, step)
    finally:
        flows.count_states(ctx)


@workflows.step("cp.finish_rollback")
def finish_rollback(rollback_id: str) -> str:
    ctx = workflows.context()
    try:
        return flows.finish_rollback(ctx, rollback_id)
    finally:
        flows.count_states(ctx)
