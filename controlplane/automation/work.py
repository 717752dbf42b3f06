"""Playbook jobs on the durable engine: one workflow per job on the playbook queue, which the migrations' playbook
steps share (CP_PLAYBOOK_CONCURRENCY runs at once across every process). A job cut short by a crash ends failed as
interrupted when the engine recovers it; it is never run again behind the operator's back."""

from __future__ import annotations

from controlplane import workflows
from controlplane.automation import flows
from controlplane.config import Settings


def queues(settings: Settings) -> list[workflows.Queue]:
    return [workflows.Queue(flows.PLAYBOOK_QUEUE, limit=settings.playbook_concurrency, drain=True)]


@workflows.workflow(flows.JOB_WORKFLOW)
def job_workflow(job_id: str) -> str:
    return job_step(job_id)


@workflows.step("cp.job.run")
def job_step(job_id: str) -> str:
    # The step runs again only when a crash cut it short (its first run left no result).
    done = flows.run_job(workflows.context(), job_id=job_id, recovered=True)
    return done.status if done is not None else "ended"
