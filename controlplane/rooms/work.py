"""The VC network on the durable engine: the probe cycles and the bridges' reconciles, each one at a time on its
queue across processes, and the bridges' deployments (a few at a time)."""

from __future__ import annotations

from typing import Any

from controlplane import workflows
from controlplane.rooms import deploy, flows, reconcile


def queues() -> list[workflows.Queue]:
    return [workflows.Queue(flows.PROBE_QUEUE, limit=1, drain=True),
            workflows.Queue(reconcile.RECONCILE_QUEUE, limit=1, drain=True),
            workflows.Queue(deploy.DEPLOY_QUEUE, limit=4)]


@workflows.workflow(flows.PROBE_WORKFLOW)
def probe_cycle_workflow() -> dict[str, Any]:
    summary = probe_step()
    if summary["bridge_changes"]:  # a bridge went down (drain it now) or came back (give it rooms)
        reconcile.request(workflows.context(), actor="prober", audited=False,
                          reconcile_id=f"vc-reconcile-{workflows.current_workflow_id()}")
    return summary


@workflows.step("cp.vc_probe")
def probe_step() -> dict[str, Any]:
    summary = flows.run_probe_cycle(workflows.context())
    return {"rooms": summary.rooms, "results": summary.results, "changes": len(summary.changes),
            "bridge_changes": [f"{code}: {before} -> {after}" for code, before, after in summary.bridge_changes],
            "seconds": round(summary.seconds, 3)}


@workflows.workflow(reconcile.RECONCILE_WORKFLOW)
def reconcile_workflow(trigger: str, actor: str) -> dict[str, Any]:
    return reconcile_step(workflows.current_workflow_id() or "", trigger, actor)


@workflows.step("cp.vc_reconcile_run")
def reconcile_step(workflow_id: str, trigger: str, actor: str) -> dict[str, Any]:
    return reconcile.run(workflows.context(), workflow_id, trigger, actor)


@workflows.workflow(deploy.DEPLOY_WORKFLOW)
def deploy_workflow(code: str, credential: str) -> dict[str, Any]:
    result = deploy_step(code, credential)
    if result["state"] == "deployed":  # rooms go onto it now, not at the next scheduled reconcile
        reconcile.request(workflows.context(), actor=f"deploy:{code}", audited=False,
                          reconcile_id=f"vc-reconcile-{workflows.current_workflow_id()}")
    return result


@workflows.step("cp.vc_deploy_bridge_run")
def deploy_step(code: str, credential: str) -> dict[str, Any]:
    return deploy.deploy(workflows.context(), code, credential)
