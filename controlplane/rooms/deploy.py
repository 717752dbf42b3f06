"""Bridges deployed on the integrated cloud, so that adding capacity is adding a server: for each catalogue bridge
not deployed yet, a server in the VC operations agency's project (CP_ROOMS_OPERATIONS_AGENCY, onboarded like any
agency), configured by the janus_bridge role through a playbook job (with a fresh admin secret, sealed), then
registered with its address; then the bridges are reconciled, so that rooms go onto it.

Each bridge is durable work of its own (a retry finds its server by its owner tag and reuses its sealed secret)."""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import Any

from controlplane.auth import audit
from controlplane.auth import service as auth_service
from controlplane.automation import flows as job_flows
from controlplane.automation import service as job_service
from controlplane.automation.domain import JobStatus
from controlplane.automation.schemas import JobHostIn, JobIn
from controlplane.cloud import flows as cloud_flows
from controlplane.cloud import service as cloud_service
from controlplane.cloud.domain import ServerSpec
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import Conflict
from controlplane.processes import process_identity
from controlplane.rooms import service
from controlplane.secrets import secret_box

log = logging.getLogger(__name__)
DEPLOY_QUEUE = "cp-vc-deploy"
DEPLOY_WORKFLOW = "cp.vc_deploy_bridge"
JOB_TIMEOUT_SECONDS = 1800


class DeployFailed(Exception):
    """A bridge could not be deployed; the message says where and why."""


def owner_tag(code: str) -> str:
    return f"vc-bridge-{code}"


def request(ctx: AppContext, *, actor: audit.Actor, count: int, credential: str) -> list[str]:
    """Hand the deployment of `count` bridges of the catalogue not deployed yet to the engine; their codes. Refused
    (409) when the catalogue has fewer, when the operations agency has no project, or the credential is unknown."""
    engine = ctx.durable("a bridge deployment")
    settings = ctx.settings
    with transaction(ctx.sessions) as session:
        job_service.get_credential(session, name=credential)  # 404 naming it
        agency = auth_service.agency_by_code(session, code=settings.rooms_operations_agency, field="agency")
        if cloud_service.find_tenancy(session, agency_id=agency.id, cloud=settings.cloud) is None:
            raise Conflict(f"the VC operations agency {agency.code} has no project on cloud {settings.cloud}: "
                           f"onboard it first (`controlplane cloud apply {agency.code}`)", field="agency")
        waiting = [b for b in service.list_bridges(session) if b.address is None and b.state != "deploying"]
        if len(waiting) < count:
            raise Conflict(f"only {len(waiting)} bridge(s) of the catalogue are not deployed: add bridges to the "
                           "catalogue (rooms/bridges.yml) and sync it first", field="count")
        chosen = [b.code for b in waiting[:count]]
        for code in chosen:
            service.mark_deploying(session, clock=ctx.clock, code=code)
        audit.record(session, clock=ctx.clock, actor=actor, action="deploy", entity_type="bridges",
                     after={"bridges": chosen, "credential": credential})
    for code in chosen:
        engine.enqueue(DEPLOY_QUEUE, DEPLOY_WORKFLOW, code, credential,
                       workflow_id=f"vc-deploy-{code}-{uuid.uuid4().hex[:8]}")
    return chosen


def deploy(ctx: AppContext, code: str, credential: str) -> dict[str, Any]:
    """The durable step: server, configuration, registration of one bridge; its bridge row says how it went."""
    try:
        result = _deploy(ctx, code, credential)
    except Exception as exc:
        log.exception("bridge %s: deployment failed", code)
        with transaction(ctx.sessions) as session:
            service.deploy_failed(session, clock=ctx.clock, code=code, error=str(exc))
        return {"bridge": code, "state": "failed", "error": str(exc)[:300]}
    return result


def _deploy(ctx: AppContext, code: str, credential: str) -> dict[str, Any]:
    settings = ctx.settings
    box = secret_box(settings)
    with transaction(ctx.sessions) as session:
        bridge = service.get_bridge(session, code=code)
        server_name, sealed = bridge.server, service.deploy_secret(session, code=code, box=box,
                                                                  new=secrets.token_urlsafe(32))
        agency = auth_service.agency_by_code(session, code=settings.rooms_operations_agency, field="agency")
        agency_id, agency_code = agency.id, agency.code
    admin_secret = box.open(sealed)
    with cloud_flows.agency_cloud(ctx, agency_id=agency_id, cloud=settings.cloud) as (gateway, spec):
        info = gateway.create_server(ServerSpec(
            owner=owner_tag(code), name=server_name, flavor=settings.rooms_bridge_flavor,
            image=settings.migration_image, network=spec.network_name,
            key_name=spec.keypair_name if spec.public_key else None, labels={"cp_agency": agency_code}))
    if not info.addresses:
        raise DeployFailed(f"server {server_name} ({info.id}) has no address")
    address = info.addresses[0]
    data = JobIn(playbook="site.yml", credential=credential, agency=agency_code,
                 hosts=[JobHostIn(name=server_name, address=address, groups=["janus_bridge"])],
                 extravars={"janus_bridge_listen_address": address},
                 secrets={"janus_bridge_admin_secret": admin_secret}, timeout_seconds=JOB_TIMEOUT_SECONDS)
    with transaction(ctx.sessions) as session:
        job = job_service.request_job(session, clock=ctx.clock, actor=f"deploy:{code}", box=box, data=data,
                                      runner=process_identity(), artifacts=settings.effective_artifacts_dir,
                                      queued=False)
        job_id = job.id
    done = job_flows.run_job(ctx, job_id=job_id)
    if done is None or done.status != JobStatus.SUCCESSFUL.value:
        why = done.explanation if done is not None else "the job did not start"
        raise DeployFailed(f"configuring {server_name} ({address}): job {job_id} "
                           f"{done.status if done else 'failed'}: {why}")
    with transaction(ctx.sessions) as session:
        service.register_bridge(session, clock=ctx.clock, actor=f"deploy:{code}", box=box, settings=settings,
                                code=code, address=address, http_port=8088, admin_port=7088,
                                admin_secret=admin_secret)
    return {"bridge": code, "state": "deployed", "server": info.id, "address": address, "job": job_id}
