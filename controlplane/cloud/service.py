"""Database access for agencies on the cloud: onboarding specs, plans, operations. Keyword-only, no HTTP, no
cloud calls (those are in flows.py, through the gateway port)."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import ipaddress
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any

import yaml
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from controlplane.auth import audit
from controlplane.auth.models import Agency
from controlplane.auth.roles import Principal
from controlplane.auth.service import agency_by_code
from controlplane.clock import Clock
from controlplane.cloud import domain
from controlplane.cloud.models import CloudOperation, CloudTenancy
from controlplane.cloud.schemas import (
    AgencyQuotaRead,
    ChangeRead,
    FieldChangeRead,
    HypervisorRead,
    IngressRuleSpec,
    InventoryFormat,
    NetworkRead,
    OnboardingSpecIn,
    OnboardingSpecRead,
    OperationError,
    OperationRead,
    OperationStatus,
    PlanRead,
    PlanSummary,
    QuotasSpec,
    QuotaUseRead,
    ResourceNames,
    ServerRead,
    TenancyRead,
    TenancyStatus,
)
from controlplane.errors import Conflict, Forbidden, InvalidInput, NotFound
from controlplane.secrets import SecretBox

KIND_APPLY = "onboarding_apply"
ACTIVE = (OperationStatus.QUEUED.value, OperationStatus.RUNNING.value)
INTERRUPTED = "interrupted"
MAX_ERROR = 2000
_SECRET_HINTS = ("password", "secret", "token", "credential")


class OperationInProgress(Conflict):
    code = "operation_in_progress"


# --- reach -----------------------------------------------------------------------------------------

def reach_agency(session: Session, *, viewer: audit.Actor, code: str) -> Agency:
    """The agency `code`, if the caller may see its cloud tenancy (a ministry: its own agency only)."""
    agency = agency_by_code(session, code=code, field="code")
    if isinstance(viewer, Principal) and not viewer.can_reach(agency.id):
        raise Forbidden(f"you may see the cloud tenancy of {viewer.agency_code} only", field="code")
    return agency


def find_tenancy(session: Session, *, agency_id: int, cloud: str) -> CloudTenancy | None:
    return session.scalar(
        select(CloudTenancy).where(CloudTenancy.agency_id == agency_id, CloudTenancy.cloud == cloud)
    )


def get_tenancy(session: Session, *, viewer: audit.Actor, cloud: str, code: str) -> CloudTenancy:
    agency = reach_agency(session, viewer=viewer, code=code)
    tenancy = find_tenancy(session, agency_id=agency.id, cloud=cloud)
    if tenancy is None:
        raise NotFound(f"agency {agency.code} has no onboarding spec on cloud '{cloud}': "
                       f"PUT /api/v1/cloud/agencies/{agency.code}/onboarding first", field="code")
    return tenancy


def list_tenancies(session: Session, *, viewer: audit.Actor, cloud: str) -> Sequence[CloudTenancy]:
    query = (select(CloudTenancy).join(Agency, CloudTenancy.agency_id == Agency.id)
             .where(CloudTenancy.cloud == cloud).order_by(Agency.code))
    if isinstance(viewer, Principal) and viewer.scoped:
        query = query.where(CloudTenancy.agency_id == viewer.agency_id)
    return session.scalars(query).unique().all()


# --- the desired spec ------------------------------------------------------------------------------

def _ingress(rules: Iterable[Mapping[str, Any]]) -> tuple[domain.IngressRule, ...]:
    return tuple(
        domain.IngressRule(protocol=r["protocol"], port_min=r.get("port_min"), port_max=r.get("port_max"),
                           remote_cidr=r["remote_cidr"])
        for r in rules
    )


def _spec(code: str, *, quotas: QuotasSpec, cidr: str, ingress: Iterable[Mapping[str, Any]],
          public_key: str | None) -> domain.OnboardingSpec:
    return domain.OnboardingSpec(
        agency_code=code,
        quotas=domain.Quotas(instances=quotas.instances, cores=quotas.cores, ram_mb=quotas.ram_mb,
                             volumes=quotas.volumes),
        cidr=cidr, ingress=_ingress(ingress), public_key=public_key,
    )


def _quotas(tenancy: CloudTenancy) -> QuotasSpec:
    return QuotasSpec(instances=tenancy.quota_instances, cores=tenancy.quota_cores, ram_mb=tenancy.quota_ram_mb,
                      volumes=tenancy.quota_volumes)


def spec_of(tenancy: CloudTenancy) -> domain.OnboardingSpec:
    return _spec(tenancy.agency.code, quotas=_quotas(tenancy), cidr=tenancy.cidr, ingress=tenancy.ingress,
                 public_key=tenancy.public_key)


def names_of(spec: domain.OnboardingSpec) -> ResourceNames:
    return ResourceNames(project=spec.project_name, network=spec.network_name, subnet=spec.subnet_name,
                         router=spec.router_name, security_group=spec.security_group_name,
                         keypair=spec.keypair_name, user=spec.user_name)


def spec_read(tenancy: CloudTenancy) -> OnboardingSpecRead:
    return OnboardingSpecRead(
        agency=tenancy.agency.code, cloud=tenancy.cloud, quotas=_quotas(tenancy), cidr=tenancy.cidr,
        ingress=[IngressRuleSpec.model_validate(r) for r in tenancy.ingress], public_key=tenancy.public_key,
        names=names_of(spec_of(tenancy)), updated_at=tenancy.updated_at,
    )


def key_fingerprint(public_key: str | None) -> str | None:
    """OpenSSH's SHA256 fingerprint of a public key line (what the audit log shows instead of the key)."""
    if not public_key:
        return None
    parts = public_key.split()
    try:
        blob = base64.b64decode(parts[1], validate=True) if len(parts) > 1 else public_key.encode()
    except (binascii.Error, ValueError):
        blob = public_key.encode()
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def api_field(field: str) -> str:
    """A domain field path as the API names fields: ingress[0].port_min -> ingress.0.port_min; the agency's code
    is the path parameter `code`."""
    field = re.sub(r"\[(\d+)\]", r".\1", field)
    return "code" if field == "agency_code" else field


def _spec_snapshot(tenancy: CloudTenancy) -> dict[str, Any]:
    return {
        "cloud": tenancy.cloud,
        "quotas": _quotas(tenancy).model_dump(),
        "cidr": tenancy.cidr,
        "ingress": [dict(r) for r in tenancy.ingress],
        "public_key": key_fingerprint(tenancy.public_key),
    }


def _networks(cidrs: Iterable[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    found = []
    for cidr in cidrs:
        try:
            found.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    return found


def _free_default_cidr(taken: Iterable[str]) -> str:
    cidr = domain.free_default_cidr(taken)
    if cidr is None:
        raise Conflict("no free default agency network is left on this cloud; give a cidr", field="cidr")
    return cidr


def put_spec(
    session: Session, *, clock: Clock, actor: audit.Actor, cloud: str, code: str, data: OnboardingSpecIn
) -> tuple[CloudTenancy, bool]:
    """Create or replace an agency's desired spec on `cloud`; (tenancy, created). Nothing is changed on the
    cloud until an apply."""
    agency = reach_agency(session, viewer=actor, code=code)
    tenancy = find_tenancy(session, agency_id=agency.id, cloud=cloud)
    if tenancy is not None and tenancy.last_operation and tenancy.last_operation.status in ACTIVE:
        raise OperationInProgress(
            f"an apply for {agency.code} is {tenancy.last_operation.status}; change the spec after it ends",
            details=[{"operation_id": tenancy.last_operation.id}],
        )
    others = session.scalars(
        select(CloudTenancy.cidr).where(CloudTenancy.cloud == cloud, CloudTenancy.agency_id != agency.id)
    ).all()
    cidr = (data.cidr or "").strip() or (tenancy.cidr if tenancy else _free_default_cidr(others))
    public_key = (data.public_key or "").strip() or None
    ingress = [rule.model_dump() for rule in data.ingress]
    try:
        spec = _spec(agency.code, quotas=data.quotas, cidr=cidr, ingress=ingress, public_key=public_key)
        domain.validate_spec(spec)
    except domain.SpecError as exc:
        raise InvalidInput(f"{api_field(exc.field)}: {exc.reason}", field=api_field(exc.field)) from None
    wanted = ipaddress.ip_network(spec.cidr, strict=False)
    for other in _networks(others):
        if other.version == wanted.version and other.overlaps(wanted):
            raise Conflict(f"{spec.cidr} overlaps {other}, the network of another agency on cloud '{cloud}'",
                           field="cidr")
    if tenancy is not None and tenancy.network_id and ipaddress.ip_network(tenancy.cidr, strict=False) != wanted:
        raise Conflict(f"the network of {agency.code} exists already with {tenancy.cidr}; it cannot be renumbered "
                       "in place", field="cidr")

    now = clock.now()
    created = tenancy is None
    if tenancy is None:
        tenancy = CloudTenancy(agency_id=agency.id, agency=agency, cloud=cloud, created_at=now, updated_at=now)
        session.add(tenancy)
        before: dict[str, Any] | None = None
    else:
        before = _spec_snapshot(tenancy)
    tenancy.quota_instances, tenancy.quota_cores = data.quotas.instances, data.quotas.cores
    tenancy.quota_ram_mb, tenancy.quota_volumes = data.quotas.ram_mb, data.quotas.volumes
    tenancy.cidr, tenancy.ingress, tenancy.public_key = str(wanted), ingress, public_key
    after = _spec_snapshot(tenancy)
    if before is None or before != after:
        tenancy.updated_at = now
        session.flush()
        audit.record(session, clock=clock, actor=actor, action="create" if created else "update",
                     entity_type="cloud_tenancy", entity_id=f"{cloud}/{agency.code}", before=before, after=after,
                     agency_id=agency.id)
    return tenancy, created


# --- plans -----------------------------------------------------------------------------------------

def _plain(value: Any) -> Any:
    """A JSON-able form of a value found in a plan (dataclasses, tuples, sets, enums...)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, set | frozenset):
        return sorted((_plain(v) for v in value), key=lambda v: json.dumps(v, sort_keys=True, default=str))
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return str(getattr(value, "value", value))


def _secret_field(name: str) -> bool:
    lowered = name.lower()
    return lowered in audit.SECRET_FIELDS or any(hint in lowered for hint in _SECRET_HINTS)


def plan_document(plan: domain.Plan) -> dict[str, Any]:
    """The plan as stored and returned: summary and changes, secret-looking fields redacted."""
    return {
        "summary": plan.summary(),
        "is_noop": plan.is_noop,
        "changes": [
            {"action": c.action, "resource": c.resource, "name": c.name,
             "fields": [{"field": f, "old": audit.REDACTED if _secret_field(f) else _plain(old),
                         "new": audit.REDACTED if _secret_field(f) else _plain(new)}
                        for f, old, new in c.fields]}
            for c in plan.changes
        ],
        "skipped": list(plan.skipped),
    }


def plan_read(document: Mapping[str, Any], *, agency: str, cloud: str, at: datetime | None) -> PlanRead:
    return PlanRead(
        agency=agency, cloud=cloud, summary=document["summary"], is_noop=document["is_noop"], planned_at=at,
        changes=[ChangeRead(action=c["action"], resource=c["resource"], name=c["name"],
                            fields=[FieldChangeRead.model_validate(f) for f in c.get("fields", [])])
                 for c in document.get("changes", [])],
        skipped=document.get("skipped", []),
    )


def last_plan_read(tenancy: CloudTenancy) -> PlanRead | None:
    if tenancy.last_plan is None:
        return None
    return plan_read(tenancy.last_plan, agency=tenancy.agency.code, cloud=tenancy.cloud, at=tenancy.last_planned_at)


def record_plan(session: Session, *, clock: Clock, tenancy: CloudTenancy, plan: domain.Plan) -> PlanRead:
    """Keep the plan just made as the tenancy's last plan (an observation, not a change: no audit row)."""
    document, now = plan_document(plan), clock.now()
    tenancy.last_plan, tenancy.last_planned_at = document, now
    return plan_read(document, agency=tenancy.agency.code, cloud=tenancy.cloud, at=now)


# --- operations ------------------------------------------------------------------------------------

def operation_read(op: CloudOperation) -> OperationRead:
    error = OperationError(code=op.error_code or "error", message=op.error or "") if op.status == "failed" else None
    return OperationRead(
        id=op.id, kind=op.kind, agency=op.agency.code, cloud=op.cloud, status=OperationStatus(op.status),
        requested_by=op.requested_by, created_at=op.created_at, started_at=op.started_at,
        finished_at=op.finished_at, result=op.result, error=error,
    )


def get_operation(session: Session, *, viewer: audit.Actor, operation_id: str) -> CloudOperation:
    op = session.get(CloudOperation, operation_id)
    if op is None or (isinstance(viewer, Principal) and not viewer.can_reach(op.agency_id)):
        raise NotFound(f"unknown operation '{operation_id}'", field="operation_id")
    return op


def list_operations(session: Session, *, agency_id: int, cloud: str, limit: int = 10) -> Sequence[CloudOperation]:
    return session.scalars(
        select(CloudOperation).where(CloudOperation.agency_id == agency_id, CloudOperation.cloud == cloud)
        .order_by(CloudOperation.created_at.desc(), CloudOperation.id).limit(limit)
    ).all()


def request_apply(
    session: Session, *, clock: Clock, actor: audit.Actor, cloud: str, code: str, runner: str,
) -> CloudOperation:
    """Record an apply of the agency's spec as a queued operation; at most one is queued or running per tenancy."""
    tenancy = get_tenancy(session, viewer=actor, cloud=cloud, code=code)
    previous = tenancy.last_operation
    if previous is not None and previous.status in ACTIVE:
        raise OperationInProgress(f"an apply for {code} is {previous.status} already: operation {previous.id}",
                                  details=[{"operation_id": previous.id}])
    op = CloudOperation(
        id=str(uuid.uuid4()), kind=KIND_APPLY, agency_id=tenancy.agency_id, agency=tenancy.agency, cloud=cloud,
        status=OperationStatus.QUEUED.value, requested_by=actor.username if isinstance(actor, Principal) else actor,
        requested_by_user_id=actor.user_id if isinstance(actor, Principal) else None, runner=runner,
        created_at=clock.now(),
    )
    session.add(op)
    session.flush()
    # Compare-and-set: another request that queued an apply meanwhile has moved last_operation_id on.
    expected = CloudTenancy.last_operation_id.is_(None) if previous is None \
        else CloudTenancy.last_operation_id == previous.id
    swapped = session.execute(
        update(CloudTenancy).where(CloudTenancy.id == tenancy.id, expected).values(last_operation_id=op.id)
        .execution_options(synchronize_session=False)
    )
    if swapped.rowcount != 1:  # type: ignore[attr-defined]
        raise OperationInProgress(f"another apply for {code} was queued at the same time")
    session.expire(tenancy, ["last_operation_id", "last_operation"])
    audit.record(session, clock=clock, actor=actor, action="apply", entity_type="cloud_tenancy",
                 entity_id=f"{cloud}/{code}", after={"operation_id": op.id, "status": op.status},
                 agency_id=tenancy.agency_id)
    return op


def begin_operation(
    session: Session, *, clock: Clock, operation_id: str, runner: str
) -> tuple[CloudOperation, domain.OnboardingSpec] | None:
    """Move a queued operation to running and give the spec to apply (None when it has ended). One running
    already was cut short by a crash and is taken again by the engine that recovered it."""
    started = session.execute(
        update(CloudOperation).where(CloudOperation.id == operation_id, CloudOperation.status.in_(ACTIVE))
        .values(status=OperationStatus.RUNNING.value, started_at=clock.now(), runner=runner)
        .execution_options(synchronize_session=False)
    )
    if started.rowcount != 1:  # type: ignore[attr-defined]
        return None
    op = session.get(CloudOperation, operation_id, populate_existing=True)
    assert op is not None
    tenancy = find_tenancy(session, agency_id=op.agency_id, cloud=op.cloud)
    if tenancy is None:  # pragma: no cover - a tenancy is never deleted while it has operations
        raise NotFound(f"operation {operation_id} has no tenancy")
    return op, spec_of(tenancy)


def _applied_snapshot(tenancy: CloudTenancy) -> dict[str, Any]:
    return {"project_id": tenancy.project_id, "network_id": tenancy.network_id,
            "service_user": tenancy.service_user, "password": tenancy.service_password_sealed}


def complete_apply(
    session: Session, *, clock: Clock, box: SecretBox, operation_id: str, result: domain.ApplyResult
) -> CloudOperation:
    """Record what an apply made. The agency user's new password is sealed; nothing else ever holds it."""
    op = session.get(CloudOperation, operation_id, populate_existing=True)
    assert op is not None
    tenancy = find_tenancy(session, agency_id=op.agency_id, cloud=op.cloud)
    assert tenancy is not None
    spec = spec_of(tenancy)
    now = clock.now()
    before = _applied_snapshot(tenancy)
    tenancy.project_id, tenancy.network_id = result.project_id, result.network_id
    tenancy.service_user = result.credential.user_name if result.credential else spec.user_name
    if result.credential is not None:
        tenancy.service_password_sealed = box.seal(result.credential.password)
    tenancy.last_plan, tenancy.last_planned_at, tenancy.last_applied_at = plan_document(result.plan), now, now
    op.status, op.finished_at, op.error_code, op.error = OperationStatus.SUCCEEDED.value, now, None, None
    op.result = {
        **plan_document(result.plan), "project_id": result.project_id, "network_id": result.network_id,
        "service_user": tenancy.service_user, "password_set": result.credential is not None,
    }
    after = {**_applied_snapshot(tenancy), "operation_id": op.id, "plan": result.plan.summary()}
    audit.record(session, clock=clock, actor=op.requested_by, action="applied", entity_type="cloud_tenancy",
                 entity_id=f"{op.cloud}/{tenancy.agency.code}", before=before, after=after,
                 agency_id=tenancy.agency_id)
    return op


def fail_operation(session: Session, *, clock: Clock, operation_id: str, code: str, message: str,
                   actor: str | None = None) -> CloudOperation | None:
    op = session.get(CloudOperation, operation_id, populate_existing=True)
    if op is None or op.status not in ACTIVE:
        return None
    op.status, op.finished_at = OperationStatus.FAILED.value, clock.now()
    op.error_code, op.error = code[:64], message[:MAX_ERROR]
    audit.record(session, clock=clock, actor=actor or op.requested_by, action="apply_failed",
                 entity_type="cloud_tenancy", entity_id=f"{op.cloud}/{op.agency.code}",
                 after={"operation_id": op.id, "error_code": op.error_code}, agency_id=op.agency_id)
    return op


def operation_agency(session: Session, *, operation_id: str) -> str:
    op = session.get(CloudOperation, operation_id)
    if op is None:
        raise NotFound(f"no cloud operation {operation_id}", field="operation_id")
    return op.agency.code


def queued_operations(session: Session) -> list[CloudOperation]:
    """The operations waiting for the engine, oldest first."""
    return list(session.scalars(select(CloudOperation).where(CloudOperation.status == OperationStatus.QUEUED.value)
                                .order_by(CloudOperation.created_at)))


def agency_credential(tenancy: CloudTenancy, *, box: SecretBox) -> domain.AgencyCredential | None:
    """The agency service user's credential (for a gateway acting as the agency); never for the API."""
    if not (tenancy.service_user and tenancy.service_password_sealed and tenancy.project_id):
        return None
    return domain.AgencyCredential(user_name=tenancy.service_user, password=box.open(tenancy.service_password_sealed),
                                   project_id=tenancy.project_id)


# --- status ----------------------------------------------------------------------------------------

def tenancy_status(tenancy: CloudTenancy) -> TenancyStatus:
    op = tenancy.last_operation
    if op is not None and op.status in ACTIVE:
        return TenancyStatus(op.status)
    if op is not None and op.status == OperationStatus.FAILED.value:
        return TenancyStatus.FAILED
    if tenancy.last_applied_at is None:
        return TenancyStatus.NOT_APPLIED
    if tenancy.updated_at > tenancy.last_applied_at:
        return TenancyStatus.PENDING_CHANGES
    return TenancyStatus.APPLIED


def quota_reads(figures: Iterable[domain.ResourceUsage]) -> list[QuotaUseRead]:
    return [QuotaUseRead(resource=f.resource, limit=f.limit, in_use=f.in_use,
                         ratio=None if f.limit < 0 else (f.in_use / f.limit if f.limit else (1.0 if f.in_use else 0.0)))
            for f in figures]


def hypervisor_reads(figures: Iterable[domain.HypervisorCapacity]) -> list[HypervisorRead]:
    return [HypervisorRead(**dataclasses.asdict(f)) for f in figures]


def agency_quota_read(code: str, project_id: str, figures: Iterable[domain.ResourceUsage]) -> AgencyQuotaRead:
    return AgencyQuotaRead(agency=code, project_id=project_id, quota=quota_reads(figures))


def tenancy_read(tenancy: CloudTenancy, *, quota: Iterable[domain.ResourceUsage] = (),
                 quota_at: datetime | None = None) -> TenancyRead:
    spec = spec_of(tenancy)
    plan = tenancy.last_plan
    return TenancyRead(
        agency=tenancy.agency.code, name_ko=tenancy.agency.name_ko, name_en=tenancy.agency.name_en,
        cloud=tenancy.cloud, status=tenancy_status(tenancy), project=spec.project_name,
        project_id=tenancy.project_id, network_id=tenancy.network_id, service_user=tenancy.service_user,
        cidr=tenancy.cidr, last_applied_at=tenancy.last_applied_at,
        last_plan=PlanSummary(summary=plan["summary"], is_noop=plan["is_noop"], planned_at=tenancy.last_planned_at)
        if plan else None,
        last_operation_id=tenancy.last_operation_id, quota=quota_reads(quota), quota_as_of=quota_at,
    )


def server_read(server: domain.ServerInfo) -> ServerRead:
    return ServerRead(id=server.id, name=server.name, status=server.status, owner=server.owner,
                      addresses=list(server.addresses), flavor=server.flavor)


def network_reads(spec: domain.OnboardingSpec, observed: domain.ObservedState) -> list[NetworkRead]:
    """The agency network as found on the cloud (one per tenancy; none before the first apply)."""
    network_id = observed.network_id
    if network_id is None:
        return []
    return [NetworkRead(name=spec.network_name, network_id=network_id, subnet=spec.subnet_name,
                        subnet_id=observed.subnet_id, cidr=observed.subnet_cidr, router=spec.router_name,
                        router_id=observed.router_id)]


# --- inventory -------------------------------------------------------------------------------------

def inventory_group(spec: domain.OnboardingSpec) -> str:
    """agency_<code>: Ansible group names take letters, digits and underscores only."""
    return "".join(c if c.isalnum() else "_" for c in spec.project_name)


def inventory_document(servers: Iterable[domain.ServerInfo], *, spec: domain.OnboardingSpec) -> dict[str, Any]:
    return domain.static_inventory(servers, group=inventory_group(spec))


def _ini_value(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if not text or any(c.isspace() or c in "\"'#;=" for c in text) else text


def render_inventory(document: Mapping[str, Any], fmt: InventoryFormat) -> str:
    if fmt == InventoryFormat.JSON:
        return json.dumps(document, indent=2, sort_keys=False) + "\n"
    if fmt == InventoryFormat.YAML:
        return str(yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
    lines: list[str] = []
    for group, body in (document.get("all", {}).get("children") or {}).items():
        lines.append(f"[{group}]")
        for host, variables in ((body or {}).get("hosts") or {}).items():
            if not host or any(c.isspace() for c in host):
                lines.append(f"# skipped {json.dumps(host)}: not a valid inventory host name")
                continue
            pairs = " ".join(f"{k}={_ini_value(v)}" for k, v in (variables or {}).items())
            lines.append(f"{host} {pairs}".rstrip())
        lines.append("")
    return "\n".join(lines)
