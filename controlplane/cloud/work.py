"""Cloud applies on the durable engine: one workflow per apply, on a queue that runs at most one apply per agency
and CP_CLOUD_APPLY_CONCURRENCY in all, across every process. An apply cut short by a crash runs again from its
start when the engine recovers it (an apply is safe to repeat)."""

from __future__ import annotations

from controlplane import workflows
from controlplane.cloud import flows
from controlplane.config import Settings


def queues(settings: Settings) -> list[workflows.Queue]:
    return [workflows.Queue(flows.APPLY_QUEUE, limit=settings.cloud_apply_concurrency, per_partition=1, drain=True)]


@workflows.workflow(flows.APPLY_WORKFLOW)
def apply_workflow(operation_id: str) -> str:
    return apply_step(operation_id)


@workflows.step("cp.cloud_apply.run")
def apply_step(operation_id: str) -> str:
    done = flows.run_apply(workflows.context(), operation_id=operation_id)
    return done.status if done is not None else "ended"
