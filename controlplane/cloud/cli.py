"""`controlplane cloud ...`: agencies on the cloud from the command line: their onboarding spec, plan and apply,
status, capacity and Ansible inventory (as the CLI's system actor; every write audited)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer
import yaml

from controlplane import clikit
from controlplane.cloud import flows as cloud_flows
from controlplane.cloud import service as cloud_service
from controlplane.cloud.metrics import CloudCollector
from controlplane.cloud.schemas import InventoryFormat, OnboardingSpecIn, OnboardingSpecRead, PlanRead, QuotaUseRead
from controlplane.config import Settings
from controlplane.db import transaction

cloud_app = typer.Typer(help="Agencies on the cloud: onboarding spec, plan/apply, status, capacity, inventory.",
                        no_args_is_help=True)
console, err = clikit.console, clikit.err
_API_ADVICE = re.compile(r"PUT /api/v1/cloud/agencies/([^/\s]+)/onboarding")


def _wording(message: str) -> str:
    """The API's advice as the command that does it."""
    return _API_ADVICE.sub(r"set it with `controlplane cloud spec \1 --file spec.yaml`", message)


# The agency is the AGENCY argument here (the API's path parameter `code`).
_reports = clikit.reports(fields={"code": "agency"}, wording=_wording)


def _quota_text(quota: list[QuotaUseRead]) -> str:
    return ", ".join(f"{q.resource} {q.in_use}/{'∞' if q.limit < 0 else q.limit}" for q in quota) or "–"


def _print_plan(plan: PlanRead) -> None:
    if plan.is_noop:
        clikit.say(f"{plan.agency} on {plan.cloud}: nothing to change")
        return
    table = clikit.table("action", "resource", "name", "changes",
                         title=f"{plan.agency} on {plan.cloud}: {plan.summary}", fold=("changes",), wrap=("name",))
    for change in plan.changes:
        fields = "; ".join(f"{f.field}: {f.old!r} -> {f.new!r}" for f in change.fields)
        table.add_row(change.action, change.resource, change.name, fields)
    console.print(table)


def _spec_document(spec: OnboardingSpecRead, settings: Settings) -> str:
    """The spec as YAML in the shape of the request body (what `cloud spec CODE --file` reads back)."""
    body: dict[str, Any] = OnboardingSpecIn(quotas=spec.quotas, cidr=spec.cidr, ingress=spec.ingress,
                                            public_key=spec.public_key).model_dump(mode="json")
    head = (f"# onboarding spec of {spec.agency} on cloud {spec.cloud}, changed "
            f"{clikit.local(spec.updated_at, settings)}\n"
            f"# project {spec.names.project}, network {spec.names.network}, user {spec.names.user}\n")
    return head + yaml.safe_dump(body, sort_keys=False, allow_unicode=True)


@cloud_app.command("spec")
@_reports
def cloud_spec(
    agency: str = typer.Argument(..., help="agency code"),
    file: Path | None = typer.Option(None, "--file", dir_okay=False,
                                     help="YAML or JSON: quotas, cidr, ingress, public_key (as PUT "
                                          "/api/v1/cloud/agencies/{code}/onboarding); without it, print the spec"),
) -> None:
    """Set the agency's onboarding spec from a file (nothing changes on the cloud until `cloud apply`), or print
    the current one as YAML."""
    data = clikit.body(file, OnboardingSpecIn) if file is not None else None
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        settings = ctx.settings
        if data is None:
            spec = cloud_service.spec_read(cloud_service.get_tenancy(
                session, viewer=clikit.actor(), cloud=ctx.cloud.cloud_name, code=agency))
        else:
            tenancy, created = cloud_service.put_spec(session, clock=ctx.clock, actor=clikit.actor(),
                                                      cloud=ctx.cloud.cloud_name, code=agency, data=data)
            spec = cloud_service.spec_read(tenancy)
    if data is None:
        clikit.write_out(_spec_document(spec, settings))
        return
    quotas = ", ".join(f"{name} {value}" for name, value in spec.quotas.model_dump().items())
    clikit.say(f"{'created' if created else 'set'} the onboarding spec of {spec.agency} on {spec.cloud}: cidr "
               f"{spec.cidr}, {len(spec.ingress)} ingress rule(s), quotas {quotas}"
               f"{', a public key' if spec.public_key else ''}; `controlplane cloud plan {spec.agency}` shows what an "
               "apply would change")


@cloud_app.command("plan")
@_reports
def cloud_plan(agency: str = typer.Argument(..., help="agency code")) -> None:
    """What an apply would change on the cloud now (read-only; kept as the agency's last plan)."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        plan = cloud_flows.plan(session, ctx=ctx, viewer=clikit.actor(), code=agency)
    _print_plan(plan)


@cloud_app.command("apply")
@_reports
def cloud_apply(
    agency: str = typer.Argument(..., help="agency code"),
    yes: bool = typer.Option(False, "--yes", "-y", help="apply without showing the plan and asking first"),
) -> None:
    """Apply the agency's onboarding spec to the cloud, wait for it and print what changed."""
    actor = clikit.actor()
    with clikit.context() as ctx:
        if not yes:
            with transaction(ctx.sessions) as session:
                plan = cloud_flows.plan(session, ctx=ctx, viewer=actor, code=agency)
            _print_plan(plan)
            if plan.is_noop:
                return
            typer.confirm("apply these changes?", abort=True)
        with transaction(ctx.sessions) as session:
            op_id = cloud_flows.request_apply(session, ctx=ctx, actor=actor, code=agency, foreground=True).id
        with clikit.working(f"applying the onboarding of {agency} (operation {op_id}) ..."):
            cloud_flows.run_apply(ctx, operation_id=op_id)
        with transaction(ctx.sessions) as session:
            op = cloud_service.operation_read(cloud_service.get_operation(session, viewer=actor, operation_id=op_id))
    if op.error is not None:
        raise clikit.fail(f"operation {op.id} failed: {op.error.message}")
    result = op.result or {}
    _print_plan(cloud_service.plan_read(result, agency=op.agency, cloud=op.cloud, at=op.finished_at))
    clikit.say(f"operation {op.id} succeeded: project {result.get('project_id')}, network {result.get('network_id')}, "
               f"service user {result.get('service_user')}"
               + (" (new password stored sealed)" if result.get("password_set") else ""))


@cloud_app.command("status")
@_reports
def cloud_status(agency: str | None = typer.Argument(None, help="agency code (default: every agency)")) -> None:
    """Agencies on the cloud: status and quota use; with AGENCY also its networks and servers."""
    with clikit.context() as ctx:
        cloud = ctx.cloud.cloud_name
        if agency is not None:
            with transaction(ctx.sessions) as session:
                detail = cloud_flows.agency_detail(session, ctx=ctx, viewer=clikit.actor(), code=agency)
        else:
            reached = cloud_flows.refresh_cloud(ctx, only_if_configured=False)
            snapshot = ctx.metrics.of(CloudCollector).snapshot
            with transaction(ctx.sessions) as session:
                rows = [cloud_service.tenancy_read(t, quota=snapshot.quotas.get(t.agency.code, ()))
                        for t in cloud_service.list_tenancies(session, viewer=clikit.actor(), cloud=cloud)]
    if agency is None:
        if not reached:
            clikit.say(f"warning: cloud '{cloud}' not reached{': ' + snapshot.error if snapshot.error else ''}; "
                       "quota use not shown", out=err)
        table = clikit.table("agency", "status", "project", "cidr", "last applied", "last plan", "quota use",
                             title=f"Agencies on cloud {cloud}", fold=("last plan", "quota use"))
        for row in rows:
            table.add_row(row.agency, row.status.value, row.project_id or "–", row.cidr,
                          row.last_applied_at.isoformat(timespec="seconds") if row.last_applied_at else "–",
                          row.last_plan.summary if row.last_plan else "–", _quota_text(row.quota))
        console.print(table)
        return
    clikit.say(f"{detail.agency} on {detail.cloud}: {detail.status.value}; project {detail.project} "
               f"({detail.project_id or 'not created'}), cidr {detail.cidr}")
    clikit.say(f"quota use: {_quota_text(detail.quota)}")
    networks = clikit.table("network", "id", "subnet", "cidr", "router", title="Networks")
    for net in detail.networks:
        networks.add_row(net.name, net.network_id or "–", net.subnet, net.cidr or "–", net.router_id or "–")
    console.print(networks)
    servers = clikit.table("server", "status", "addresses", "flavor", "owner", "id", title="Servers",
                           wrap=("addresses", "owner"))
    for server in detail.servers:
        servers.add_row(server.name, server.status, ", ".join(server.addresses), server.flavor, server.owner or "–",
                        server.id)
    console.print(servers)
    if detail.plan is not None:
        clikit.say(f"last plan ({detail.plan.planned_at}): {detail.plan.summary}")


@cloud_app.command("capacity")
@_reports
def cloud_capacity() -> None:
    """Hypervisor capacity and every onboarded agency's quota use, read from the cloud now."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        capacity = cloud_flows.capacity(session, ctx=ctx, viewer=clikit.actor())
    table = clikit.table("hypervisor", "vcpus used", "memory used (MiB)", "servers", title=f"Cloud {capacity.cloud}",
                         right=("vcpus used", "memory used (MiB)", "servers"))
    for h in capacity.hypervisors:
        table.add_row(h.name, f"{h.vcpus_used}/{h.vcpus}", f"{h.memory_mb_used}/{h.memory_mb}", str(h.running_vms))
    t = capacity.totals
    table.add_row("total", f"{t.vcpus_used}/{t.vcpus}", f"{t.memory_mb_used}/{t.memory_mb}", str(t.running_vms))
    console.print(table)
    quotas = clikit.table("agency", "project", "quota use", title="Agencies", fold=("quota use",))
    for row in capacity.agencies:
        quotas.add_row(row.agency, row.project_id, _quota_text(row.quota))
    console.print(quotas)


@cloud_app.command("inventory")
@_reports
def cloud_inventory(
    agency: str = typer.Argument(..., help="agency code"),
    format: InventoryFormat = typer.Option(InventoryFormat.YAML, "--format", help="yaml, json or ini"),
) -> None:
    """A static Ansible inventory of the agency's servers, on stdout."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        document = cloud_flows.inventory(session, ctx=ctx, viewer=clikit.actor(), code=agency)
    clikit.write_out(cloud_service.render_inventory(document, format))
