"""The `controlplane` command line (also `python -m controlplane`)."""

from __future__ import annotations

import getpass
import os
import secrets
import sys
from datetime import date
from enum import StrEnum
from pathlib import Path

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane.auth import audit
from controlplane.auth import service as auth_service
from controlplane.auth.models import User
from controlplane.auth.roles import Role
from controlplane.auth.schemas import UserCreate
from controlplane.clock import Clock
from controlplane.cloud.schemas import InventoryFormat, PlanRead, QuotaUseRead
from controlplane.compliance import demo, tabular
from controlplane.compliance import service as compliance_service
from controlplane.compliance.domain import PeriodError, parse_period
from controlplane.config import Settings
from controlplane.context import AppContext
from controlplane.db import make_engine, make_sessionmaker, transaction
from controlplane.devcloud.cli import devcloud_app
from controlplane.errors import AppError

app = typer.Typer(
    help="Control plane of the integrated cloud and video-conference network.", no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
compliance_app = typer.Typer(help="Remote-meeting compliance register.", no_args_is_help=True)
cloud_app = typer.Typer(help="Agencies on the cloud: onboarding plan/apply, status, capacity, inventory.",
                        no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(compliance_app, name="compliance")
app.add_typer(devcloud_app, name="devcloud")
app.add_typer(cloud_app, name="cloud")

console = Console()
err = Console(stderr=True)


def _actor() -> str:
    return f"cli:{getpass.getuser()}"


def _settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        # Only the reasons: pydantic's own text repeats the input, which may hold a secret.
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem["loc"])
            reason = problem["msg"].removeprefix("Value error, ")
            err.print(f"[red]error:[/] invalid settings: {escape(f'CP_{where.upper()}: ' if where else '')}"
                      f"{escape(reason)}")
        raise typer.Exit(2) from None


def _sessions(settings: Settings) -> sessionmaker[Session]:
    return make_sessionmaker(make_engine(settings.effective_database_url))


def _fail(message: str, code: int = 1) -> typer.Exit:
    err.print(f"[red]error:[/] {escape(message)}")
    return typer.Exit(code)


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8000, help="port to bind"),
) -> None:
    """Serve the API and the web pages."""
    import uvicorn

    from controlplane.app import create_app

    uvicorn.run(create_app(_settings()), host=host, port=port, log_level="info", proxy_headers=False)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Option("head", help="target revision")) -> None:
    """Apply the schema migrations."""
    from controlplane.migrations import upgrade

    settings = _settings()
    upgrade(settings.effective_database_url, revision)
    console.print(f"database at revision {revision}")


@app.command()
def seed(
    demo_sessions: bool = typer.Option(False, help="also add plausible session history (demo data)"),
) -> None:
    """Load the agency catalogue, the policies and the designated meetings (idempotent)."""
    settings = _settings()
    clock = Clock()
    with transaction(_sessions(settings)) as session:
        agencies = auth_service.seed_agencies(session, clock=clock, actor=_actor())
        policies = compliance_service.seed_policies(session, clock=clock, actor=_actor())
        meetings = compliance_service.seed_meetings(session, clock=clock, actor=_actor())
        sessions = 0
        if demo_sessions:
            sessions = demo.load_demo_sessions(
                session, clock=clock, start=date(2011, 1, 1), end=date(clock.today().year, 12, 31)
            )
            if sessions:
                audit.record(session, clock=clock, actor=_actor(), action="import", entity_type="session",
                             after={"source": "demo", "imported": sessions})
    console.print(f"seeded: {agencies} new agencies, {policies} new policies, {meetings} new meetings, "
                  f"{sessions} demo sessions")


@app.command()
def init(
    demo_sessions: bool = typer.Option(False, help="also add plausible session history (demo data)"),
) -> None:
    """Upgrade the database, load the catalogue and make sure an admin account exists."""
    settings = _settings()
    db_upgrade("head")
    seed(demo_sessions)
    with transaction(_sessions(settings)) as session:
        if session.scalar(select(User.id).where(User.role == Role.ADMIN.value)) is not None:
            return
        password = settings.bootstrap_admin_password or secrets.token_urlsafe(18)
        auth_service.create_user(session, clock=Clock(), actor=_actor(), data=UserCreate(
            username="admin", password=password, full_name="Administrator", role=Role.ADMIN,
        ))
    if not settings.bootstrap_admin_password:
        secret_file = settings.data_dir / "initial-admin-password"
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        console.print(f"created user 'admin'; its initial password is in {secret_file} (readable by you only)")
    else:
        console.print("created user 'admin' with the password from CP_BOOTSTRAP_ADMIN_PASSWORD")


@users_app.command("create")
def users_create(
    username: str = typer.Option(..., help="login name"),
    role: Role = typer.Option(..., help="admin, operator, secretariat, ministry or auditor"),
    agency: str | None = typer.Option(None, help="agency code (required for role ministry)"),
    full_name: str = typer.Option("", help="display name"),
    email: str | None = typer.Option(None),
    password_stdin: bool = typer.Option(False, help="read the password from standard input"),
) -> None:
    """Create a user account (the password is asked for, or read from stdin)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = typer.prompt("password", hide_input=True, confirmation_prompt=True)
    try:
        data = UserCreate(username=username, password=password, role=role, agency_code=agency, full_name=full_name,
                          email=email)
    except ValueError as exc:
        raise _fail(str(exc).split("\n", 1)[1].strip() if "\n" in str(exc) else str(exc), 2) from None
    try:
        with transaction(_sessions(_settings())) as session:
            user = auth_service.create_user(session, clock=Clock(), actor=_actor(), data=data)
            console.print(f"created user '{user.username}' ({user.role})")
    except AppError as exc:
        raise _fail(f"{exc.field}: {exc.message}" if exc.field else exc.message) from None


class ReportFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    XLSX = "xlsx"


@compliance_app.command("report")
def compliance_report(
    period: str = typer.Option(..., help="YYYY, YYYY-Qn or YYYY-MM"),
    ministry: str | None = typer.Option(None, help="host ministry code: that ministry's meetings"),
    format: ReportFormat = typer.Option(ReportFormat.TABLE, "--format", help="table, csv or xlsx"),
    output: Path | None = typer.Option(None, help="file to write (default: stdout; required for xlsx on a tty)"),
) -> None:
    """Video share against the target for a period, per ministry (or per meeting of one ministry)."""
    try:
        parsed = parse_period(period)
    except PeriodError as exc:
        raise _fail(str(exc), 2) from None
    try:
        with transaction(_sessions(_settings())) as session:
            report = compliance_service.share_report(session, period=parsed, ministry=ministry)
    except AppError as exc:
        raise _fail(exc.message, 2) from None

    if format == ReportFormat.XLSX:
        content = tabular.report_xlsx(report)
        if output is None and sys.stdout.isatty():
            raise _fail("xlsx is binary: give --output FILE or redirect stdout", 2)
        if output:
            output.write_bytes(content)
        else:
            sys.stdout.buffer.write(content)
        return
    if format == ReportFormat.CSV:
        text = tabular.report_csv(report)
        if output:
            output.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return

    table = Table(title=f"Video share {report.period} ({report.start} – {report.end})")
    for column in ("scope", "code", "name", "held", "video", "share", "target", "forecast", "status"):
        table.add_column(column, justify="right" if column in ("held", "video", "share", "target") else "left")
    for row in tabular.report_rows(report):
        values = dict(zip(tabular.REPORT_COLUMNS, row, strict=True))
        table.add_row(
            str(values["scope"]), str(values["key"]), str(values["name_ko"]), str(values["held"]),
            str(values["video"]), _percent(values["share"]), _percent(values["target"]), str(values["forecast"]),
            str(values["status"]),
        )
    Console(file=output.open("w", encoding="utf-8") if output else None, width=160).print(table)


def _percent(value: object) -> str:
    return f"{float(value):.1%}" if isinstance(value, float | int) else "–"


@compliance_app.command("import")
def compliance_import(file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True)) -> None:
    """Import sessions from a CSV or XLSX file, all or nothing."""
    try:
        with transaction(_sessions(_settings())) as session:
            imported = compliance_service.import_sessions(
                session, clock=Clock(), actor=_actor(), rows=tabular.read_rows(file.name, file.read_bytes()),
                source=file.name,
            )
    except AppError as exc:
        err.print(f"[red]error:[/] {escape(exc.message)}")
        for detail in exc.details or []:
            err.print(escape(f"  row {detail['row']}: {detail['field']}: {detail['reason']}"))
        raise typer.Exit(1) from None
    console.print(escape(f"imported {imported} sessions from {file.name}"))


# --- cloud -----------------------------------------------------------------------------------------

def _cloud_context() -> AppContext:
    """What the cloud commands need of an app: settings, database, clock and the way to the cloud."""
    from controlplane.monitoring.metrics import Metrics

    settings = _settings()
    engine = make_engine(settings.effective_database_url)
    return AppContext(settings=settings, engine=engine, sessions=make_sessionmaker(engine), clock=Clock(),
                      metrics=Metrics())


def _cloud_fail(exc: AppError) -> typer.Exit:
    """4xx (bad input, unknown agency, conflict) exit 2; the cloud's own failures exit 1."""
    return _fail(f"{exc.field}: {exc.message}" if exc.field else exc.message, 2 if exc.status_code < 500 else 1)


def _wide() -> Console:
    """Tables on a terminal take its width; piped or captured, they are not wrapped at 80 columns."""
    return Console(width=None if sys.stdout.isatty() else 220)


def _quota_text(quota: list[QuotaUseRead]) -> str:
    return ", ".join(f"{q.resource} {q.in_use}/{'∞' if q.limit < 0 else q.limit}" for q in quota) or "–"


def _print_plan(plan: PlanRead) -> None:
    if plan.is_noop:
        console.print(f"{plan.agency} on {plan.cloud}: nothing to change")
        return
    table = Table(title=escape(f"{plan.agency} on {plan.cloud}: {plan.summary}"))
    for column in ("action", "resource", "name", "changes"):
        table.add_column(column)
    for change in plan.changes:
        fields = "; ".join(f"{f.field}: {f.old!r} -> {f.new!r}" for f in change.fields)
        table.add_row(change.action, change.resource, escape(change.name), escape(fields))
    _wide().print(table)


@cloud_app.command("plan")
def cloud_plan(agency: str = typer.Argument(..., help="agency code")) -> None:
    """What an apply would change on the cloud now (read-only; kept as the agency's last plan)."""
    from controlplane.cloud import flows as cloud_flows

    ctx = _cloud_context()
    try:
        with transaction(ctx.sessions) as session:
            plan = cloud_flows.plan(session, ctx=ctx, viewer=_actor(), code=agency)
    except AppError as exc:
        raise _cloud_fail(exc) from None
    finally:
        ctx.cloud.close()
    _print_plan(plan)


@cloud_app.command("apply")
def cloud_apply(
    agency: str = typer.Argument(..., help="agency code"),
    yes: bool = typer.Option(False, "--yes", "-y", help="apply without showing the plan and asking first"),
) -> None:
    """Apply the agency's onboarding spec to the cloud, wait for it and print what changed."""
    from controlplane.cloud import flows as cloud_flows
    from controlplane.cloud import service as cloud_service

    ctx = _cloud_context()
    try:
        if not yes:
            with transaction(ctx.sessions) as session:
                plan = cloud_flows.plan(session, ctx=ctx, viewer=_actor(), code=agency)
            _print_plan(plan)
            if plan.is_noop:
                return
            typer.confirm("apply these changes?", abort=True)
        with transaction(ctx.sessions) as session:
            op_id = cloud_flows.request_apply(session, ctx=ctx, actor=_actor(), code=agency).id
        with err.status(escape(f"applying the onboarding of {agency} (operation {op_id}) ...")):
            cloud_flows.run_apply(ctx, operation_id=op_id)
        with transaction(ctx.sessions) as session:
            op = cloud_service.operation_read(cloud_service.get_operation(session, viewer=_actor(), operation_id=op_id))
    except AppError as exc:
        raise _cloud_fail(exc) from None
    finally:
        ctx.cloud.close()
    if op.error is not None:
        raise _fail(f"operation {op.id} failed: {op.error.message} ({op.error.code})", 1)
    result = op.result or {}
    _print_plan(cloud_service.plan_read(result, agency=op.agency, cloud=op.cloud, at=op.finished_at))
    console.print(escape(f"operation {op.id} succeeded: project {result.get('project_id')}, "
                         f"network {result.get('network_id')}, service user {result.get('service_user')}"
                         + (" (new password stored sealed)" if result.get("password_set") else "")), soft_wrap=True)


@cloud_app.command("status")
def cloud_status(agency: str | None = typer.Argument(None, help="agency code (default: every agency)")) -> None:
    """Agencies on the cloud: status and quota use; with AGENCY also its networks and servers."""
    from controlplane.cloud import flows as cloud_flows
    from controlplane.cloud import service as cloud_service

    ctx = _cloud_context()
    try:
        if agency is None:
            reached = cloud_flows.refresh_cloud(ctx, only_if_configured=False)
            snapshot = ctx.metrics.cloud.snapshot
            with transaction(ctx.sessions) as session:
                rows = [cloud_service.tenancy_read(t, quota=snapshot.quotas.get(t.agency.code, ()))
                        for t in cloud_service.list_tenancies(session, viewer=_actor(), cloud=ctx.cloud.cloud_name)]
        else:
            with transaction(ctx.sessions) as session:
                detail = cloud_flows.agency_detail(session, ctx=ctx, viewer=_actor(), code=agency)
    except AppError as exc:
        raise _cloud_fail(exc) from None
    finally:
        ctx.cloud.close()
    out = _wide()
    if agency is None:
        if not reached:
            err.print(escape(f"warning: cloud '{ctx.cloud.cloud_name}' not reached"
                             f"{': ' + snapshot.error if snapshot.error else ''}; quota use not shown"))
        table = Table(title=escape(f"Agencies on cloud {ctx.cloud.cloud_name}"))
        for column in ("agency", "status", "project", "cidr", "last applied", "last plan", "quota use"):
            table.add_column(column)
        for row in rows:
            table.add_row(row.agency, row.status.value, row.project_id or "–", row.cidr,
                          row.last_applied_at.isoformat(timespec="seconds") if row.last_applied_at else "–",
                          row.last_plan.summary if row.last_plan else "–", _quota_text(row.quota))
        out.print(table)
        return
    out.print(escape(f"{detail.agency} on {detail.cloud}: {detail.status.value}; project {detail.project} "
                     f"({detail.project_id or 'not created'}), cidr {detail.cidr}"), soft_wrap=True)
    out.print(escape(f"quota use: {_quota_text(detail.quota)}"), soft_wrap=True)
    networks = Table("network", "id", "subnet", "cidr", "router", title="Networks")
    for net in detail.networks:
        networks.add_row(net.name, net.network_id or "–", net.subnet, net.cidr or "–", net.router_id or "–")
    out.print(networks)
    servers = Table("server", "status", "addresses", "flavor", "owner", "id", title="Servers")
    for server in detail.servers:
        servers.add_row(escape(server.name), server.status, ", ".join(server.addresses), server.flavor,
                        escape(server.owner or "–"), server.id)
    out.print(servers)
    if detail.plan is not None:
        out.print(escape(f"last plan ({detail.plan.planned_at}): {detail.plan.summary}"))


@cloud_app.command("capacity")
def cloud_capacity() -> None:
    """Hypervisor capacity and every onboarded agency's quota use, read from the cloud now."""
    from controlplane.cloud import flows as cloud_flows

    ctx = _cloud_context()
    try:
        with transaction(ctx.sessions) as session:
            capacity = cloud_flows.capacity(session, ctx=ctx, viewer=_actor())
    except AppError as exc:
        raise _cloud_fail(exc) from None
    finally:
        ctx.cloud.close()
    out = _wide()
    table = Table("hypervisor", "vcpus used", "memory used (MiB)", "servers", title=escape(f"Cloud {capacity.cloud}"))
    for h in capacity.hypervisors:
        table.add_row(escape(h.name), f"{h.vcpus_used}/{h.vcpus}", f"{h.memory_mb_used}/{h.memory_mb}",
                      str(h.running_vms))
    t = capacity.totals
    table.add_row("total", f"{t.vcpus_used}/{t.vcpus}", f"{t.memory_mb_used}/{t.memory_mb}", str(t.running_vms))
    out.print(table)
    quotas = Table("agency", "project", "quota use", title="Agencies")
    for row in capacity.agencies:
        quotas.add_row(row.agency, row.project_id, _quota_text(row.quota))
    out.print(quotas)


@cloud_app.command("inventory")
def cloud_inventory(
    agency: str = typer.Argument(..., help="agency code"),
    format: InventoryFormat = typer.Option(InventoryFormat.YAML, "--format", help="yaml, json or ini"),
) -> None:
    """A static Ansible inventory of the agency's servers, on stdout."""
    from controlplane.cloud import flows as cloud_flows
    from controlplane.cloud import service as cloud_service

    ctx = _cloud_context()
    try:
        with transaction(ctx.sessions) as session:
            document = cloud_flows.inventory(session, ctx=ctx, viewer=_actor(), code=agency)
    except AppError as exc:
        raise _cloud_fail(exc) from None
    finally:
        ctx.cloud.close()
    sys.stdout.write(cloud_service.render_inventory(document, format))


def main() -> None:
    app()
