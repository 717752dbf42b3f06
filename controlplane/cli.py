"""The `controlplane` command line (also `python -m controlplane`)."""

from __future__ import annotations

import getpass
import json
import os
import secrets
import sys
import threading
import time
from contextlib import nullcontext
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import typer
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.markup import escape
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane.auth import audit
from controlplane.auth import service as auth_service
from controlplane.auth.models import User
from controlplane.auth.roles import Role
from controlplane.auth.schemas import UserCreate
from controlplane.automation.domain import JobStatus
from controlplane.automation.schemas import JobEventRead, JobRead
from controlplane.clock import Clock
from controlplane.cloud.schemas import InventoryFormat, PlanRead, QuotaUseRead
from controlplane.compliance import demo, tabular
from controlplane.compliance import service as compliance_service
from controlplane.compliance.domain import PeriodError, parse_period
from controlplane.config import Settings
from controlplane.context import AppContext, CheckPort, RunnerPort
from controlplane.db import make_engine, make_sessionmaker, transaction
from controlplane.devcloud.cli import devcloud_app
from controlplane.errors import AppError
from controlplane.migration.cli import adoption, catalogue_app, plan, systems_app
from controlplane.migration.waves_cli import waves_app, worker

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
credentials_app = typer.Typer(help="SSH credentials the playbook jobs log in with (private keys stored sealed).",
                              no_args_is_help=True)
jobs_app = typer.Typer(help="Playbook jobs: run, list, show, watch, cancel.", no_args_is_help=True)
app.add_typer(cloud_app, name="cloud")
app.add_typer(credentials_app, name="credentials")
app.add_typer(jobs_app, name="jobs")
app.add_typer(systems_app, name="systems")
app.add_typer(catalogue_app, name="catalogue")
app.add_typer(waves_app, name="waves")
app.command("worker")(worker)
app.command("adoption")(adoption)
app.command("plan")(plan)

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
    err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)  # one line, however narrow the terminal
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


@users_app.command("unlock")
def users_unlock(username: str = typer.Argument(..., help="login name")) -> None:
    """Lift the login throttle of USERNAME from every client address (audited); an address throttled for failing
    across many names stays throttled until its delay has passed."""
    try:
        with transaction(_sessions(_settings())) as session:
            result = auth_service.unlock_user(session, clock=Clock(), actor=_actor(), username=username)
    except AppError as exc:
        raise _fail(f"{exc.field}: {exc.message}" if exc.field else exc.message,
                    2 if exc.status_code < 500 else 1) from None
    console.print(escape(f"unlocked '{username}': failed logins from {result.cleared} address(es) forgotten, "
                         f"{result.were_locked} of them locked"), soft_wrap=True, highlight=False)


secrets_app = typer.Typer(help="Secrets sealed at rest under CP_SECRET_KEY.", no_args_is_help=True)
app.add_typer(secrets_app, name="secrets")


def _sealed_columns() -> list[Any]:
    """Every column holding a sealed value (named *_sealed): the command line is where the domains meet, so it
    lists their models; controlplane.secrets stays below them and knows none."""
    from controlplane.automation.models import Credential, Job
    from controlplane.cloud.models import CloudTenancy
    from controlplane.migration.models import Migration

    return [column for model in (CloudTenancy, Credential, Job, Migration)
            for column in model.__table__.columns if column.name.endswith("_sealed")]


@secrets_app.command("rotate")
def secrets_rotate() -> None:
    """Re-seal every sealed value under CP_SECRET_KEY (those sealed under a key of CP_SECRET_KEY_PREVIOUS), in one
    transaction: all or nothing. Afterwards CP_SECRET_KEY_PREVIOUS can be emptied."""
    from controlplane.secrets import SecretBox, SecretError, reseal_columns

    settings = _settings()
    box = SecretBox(settings.secret_key, previous=settings.previous_secret_keys)
    try:
        with transaction(_sessions(settings)) as session:
            counts = reseal_columns(session, box=box, columns=_sealed_columns())
            audit.record(session, clock=Clock(), actor=_actor(), action="rotate", entity_type="secret_key",
                         after={"resealed": {name: c.resealed for name, c in counts.items()},
                                "previous_keys": len(settings.previous_secret_keys)})
    except SecretError as exc:
        raise _fail(f"{exc}. Nothing was changed: add the key they were sealed with to CP_SECRET_KEY_PREVIOUS "
                    "and run it again", 1) from None
    for name, count in counts.items():
        console.print(escape(f"{name}: {count.resealed} re-sealed, {count.current} already under the current key"),
                      soft_wrap=True, highlight=False)
    total = sum(c.resealed for c in counts.values())
    console.print(f"re-sealed {total} value(s) under CP_SECRET_KEY", highlight=False)


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


# --- playbook jobs and their SSH credentials -----------------------------------------------------------

WATCH_POLL_SECONDS = 0.5
EVENTS_PER_POLL = 1000
# What each field of a job request is called on the command line, for the error messages.
_JOB_OPTIONS = {"playbook": "PLAYBOOK", "credential": "--credential", "agency": "--agency", "hosts": "--hosts-file",
                "extravars": "--extra-vars", "secrets": "--secret-vars-file", "limit": "--limit",
                "timeout_seconds": "--timeout", "verify": "--no-verify"}


def _automation_ports() -> tuple[RunnerPort, CheckPort]:
    """The playbook runner and the check runner `jobs run` uses (tests replace this function)."""
    from controlplane.automation.runner import PlaybookRunner
    from controlplane.automation.verify import CheckRunner

    return PlaybookRunner(), CheckRunner()


def _jobs_context(*, run: bool = False) -> AppContext:
    """An app context for the job commands; with `run`, its runner and checks are the ones jobs run with."""
    ctx = _cloud_context()
    if run:
        runner, checks = _automation_ports()
        ctx.automation.inject(runner=runner, checks=checks)
    return ctx


def _field_message(exc: AppError) -> str:
    """'field: reason', the field named once (the automation layer's messages often start with it already)."""
    if exc.field and not exc.message.startswith(f"{exc.field}:"):
        return f"{exc.field}: {exc.message}"
    return exc.message


def _jobs_fail(exc: AppError) -> typer.Exit:
    """4xx (bad input, unknown job or credential, a job that has ended) exit 2; anything else exits 1."""
    return _fail(_field_message(exc), 2 if exc.status_code < 500 else 1)


def _validation_problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, reason) of each problem; never pydantic's own text, which repeats the input (maybe a secret)."""
    return [(".".join(str(p) for p in problem["loc"]) or "input", problem["msg"].removeprefix("Value error, "))
            for problem in exc.errors()]


def _local(value: datetime | None, settings: Settings) -> str:
    return "–" if value is None else value.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


def _read_text(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise _fail(f"{option}: cannot read {path}: {exc.strerror or exc}", 2) from None
    except UnicodeDecodeError:
        raise _fail(f"{option}: {path} is not UTF-8 text", 2) from None


def _read_yaml(path: Path, option: str) -> Any:
    """A YAML (or JSON) document; a parse error names the option and the line, never the file's content."""
    import yaml

    try:
        return yaml.safe_load(_read_text(path, option))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise _fail(f"{option}: {path} is not valid YAML{where}", 2) from None


def _mapping(value: Any, option: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise _fail(f"{option}: expected {what}, got {type(value).__name__}", 2)
    return value


def _extra_vars(value: str | None) -> dict[str, Any]:
    if value is None:
        return {}
    if value.startswith("@"):
        document = _read_yaml(Path(value[1:]), "--extra-vars")
    else:
        try:
            document = json.loads(value)
        except json.JSONDecodeError as exc:
            raise _fail(f"--extra-vars: not valid JSON ({exc.msg} at column {exc.colno}); give a JSON object "
                        "or @file.yaml", 2) from None
    return _mapping(document, "--extra-vars", "a mapping of variable names to values")


def _secret_vars(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    secrets_ = _mapping(_read_yaml(path, "--secret-vars-file"), "--secret-vars-file",
                        "a mapping of variable names to secret values")
    # Numbers are fine as secrets (a PIN, a port): they reach Ansible as text anyway.
    return {k: str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v for k, v in secrets_.items()}


def _hosts(path: Path) -> list[Any]:
    document = _read_yaml(path, "--hosts-file")
    if not isinstance(document, list) or not document:
        raise _fail(f"--hosts-file: {path} must be a non-empty list of hosts, each with name, address and "
                    "optional groups and vars", 2)
    return document


def _job_problem(field: str, reason: str, hosts_file: Path) -> str:
    """'hosts.1.address: reason (--hosts-file hosts.yaml, entry 2)': the field, and where the user wrote it."""
    top, _, rest = field.partition(".")
    option = _JOB_OPTIONS.get(top)
    if top == "hosts" and rest.split(".")[0].isdigit():
        where = f" (--hosts-file {hosts_file}, entry {int(rest.split('.')[0]) + 1})"
    elif top == "hosts":
        where = f" (--hosts-file {hosts_file})"
    else:
        where = f" ({option})" if option and option != "PLAYBOOK" else ""
    return f"{field}: {reason}{where}"


def _status_style(status: JobStatus) -> str:
    return {JobStatus.SUCCESSFUL: "green", JobStatus.FAILED: "red", JobStatus.CANCELED: "yellow"}.get(status, "cyan")


def _totals_table(job: JobRead, totals: dict[str, dict[str, int]], *, title: str = "Hosts") -> Table:
    table = Table("host", "address", "groups", "ok", "changed", "failed", "unreachable", "skipped",
                  title=title)
    for host in job.hosts:
        counts = totals.get(host.name, {})
        table.add_row(escape(host.name), escape(host.address), escape(", ".join(host.groups) or "–"),
                      *(_count(counts.get(c, 0), c) for c in ("ok", "changed", "failed", "unreachable", "skipped")))
    return table


def _count(value: int, column: str) -> str:
    if value and column in ("failed", "unreachable"):
        return f"[red]{value}[/]"
    if value and column == "changed":
        return f"[yellow]{value}[/]"
    return str(value)


def _checks_table(checks: list[tuple[str, str | None, str, str, str]]) -> Table:
    table = Table("host", "role", "check", "outcome", "message", title="Checks")
    for host, role, check, outcome, message in checks:
        style = {"passed": "green", "failed": "red"}.get(outcome, "yellow")
        table.add_row(escape(host), escape(role or "–"), escape(check), f"[{style}]{escape(outcome)}[/]",
                      escape(message))
    return table


class _JobProgress:
    """What a job watcher knows so far, from the job's row and its events as they arrive; renders itself for
    rich.live (a spinner line, the current play and task, a line per host with its counts, then the checks)."""

    def __init__(self, job: JobRead) -> None:
        self.lock = threading.Lock()  # rich.live draws from a thread of its own while events are added
        self.job = job
        self.play: str | None = None
        self.task: str | None = None
        self.phase = ""
        self.totals: dict[str, dict[str, int]] = {}
        self.checks: list[tuple[str, str | None, str, str, str]] = []
        self.seq = 0

    def add(self, event: JobEventRead) -> None:
        with self.lock:
            self._add(event)

    def _add(self, event: JobEventRead) -> None:
        self.seq = max(self.seq, event.seq)
        if event.kind == "play":
            self.play, self.task, self.phase = event.task, None, "playbook"
        elif event.kind == "task":
            self.task = event.task
        elif event.kind == "verify":
            self.phase, self.task = "verification", None
        elif event.kind == "check" and event.host is not None:
            role, _, check = (event.task or "").partition(": ")
            self.checks.append((event.host, role or None, check or role, event.status, event.message))
        elif event.host is not None and event.kind in ("ok", "failed", "unreachable", "skipped"):
            counts = self.totals.setdefault(event.host, dict.fromkeys(
                ("ok", "changed", "failed", "unreachable", "skipped"), 0))
            counts[event.kind] += 1
            counts["changed"] += int(event.changed)

    @staticmethod
    def line(event: JobEventRead) -> str | None:
        """The event as one line of a plain log (what a watcher prints when its output is not a terminal)."""
        host, task, message = event.host or "", event.task or "", event.message
        reason = f" {message}" if message else ""
        if event.kind == "play":
            return f"PLAY [{task}]"
        if event.kind == "task":
            return f"TASK [{task}]"
        if event.kind == "ok":
            return f"{'changed' if event.changed else 'ok'}: [{host}]"
        if event.kind in ("failed", "unreachable"):
            return f"{event.kind}: [{host}]{reason}"
        if event.kind == "skipped":
            return f"skipping: [{host}]"
        if event.kind == "verify":
            return f"VERIFY [{message}]"
        if event.kind == "check":
            return f"check {event.status}: [{host}] {task}{reason}"
        return None

    def __rich__(self) -> Group:
        with self.lock:
            return self._draw()

    def _draw(self) -> Group:
        job = self.job
        head = Text.assemble((f"job {job.id}", "bold"), f"  {job.playbook} on {len(job.hosts)} host(s)  ",
                             (job.status.value, _status_style(job.status)))
        parts: list[Any] = [Spinner("dots", text=head) if not job.status.finished else head]
        where = [f"play: {self.play}"] if self.play else []
        if self.phase == "verification":
            where.append("verifying: testinfra checks")
        elif self.task:
            where.append(f"task: {self.task}")
        if where:
            parts.append(Text("  ".join(where)))
        parts.append(_totals_table(job, self.totals))
        if self.checks:
            parts.append(_checks_table(list(self.checks)))
        return Group(*parts)


def _job_snapshot(ctx: AppContext, job_id: str, after: int) -> tuple[JobRead, list[JobEventRead]]:
    from controlplane.automation import service as job_service

    with transaction(ctx.sessions) as session:
        # The row first, then the events: a job seen ended has stored all its events already.
        job = job_service.job_read(job_service.get_job(session, viewer=_actor(), job_id=job_id))
        return job, job_service.events(session, job_id=job_id, after=after, limit=EVENTS_PER_POLL)


def _follow(ctx: AppContext, job_id: str) -> JobRead:
    """Poll the job's row and events until it has ended; a live view on a terminal, a plain log otherwise."""
    job, batch = _job_snapshot(ctx, job_id, 0)
    progress = _JobProgress(job)

    def step(batch: list[JobEventRead], log: bool) -> bool:
        """Take in a batch of events (printing them as a log when asked); True once everything was seen."""
        for event in batch:
            progress.add(event)
            line = progress.line(event) if log else None
            if line is not None:
                console.print(escape(line), soft_wrap=True, highlight=False)
        return progress.job.status.finished and len(batch) < EVENTS_PER_POLL

    terminal = console.is_terminal
    with Live(progress, console=console, refresh_per_second=8) if terminal else nullcontext():
        while not step(batch, not terminal):
            if len(batch) < EVENTS_PER_POLL:
                time.sleep(WATCH_POLL_SECONDS)
            progress.job, batch = _job_snapshot(ctx, job_id, progress.seq)
    if not terminal:  # the live view ends showing all this; a log ends with a recap
        _wide().print(_totals_table(progress.job, _final_totals(progress.job, progress.totals), title="Recap"))
        if progress.checks:
            _wide().print(_checks_table(progress.checks))
    return progress.job


def _final_totals(job: JobRead, seen: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    return {host: stats.model_dump() for host, stats in job.host_stats.items()} or seen


def _ended(job: JobRead) -> typer.Exit:
    """The job's outcome as the last line and the exit code: 0 successful, 1 failed or canceled."""
    verification = job.verification
    if verification is not None and verification.error is None:
        console.print(f"checks: {verification.passed} passed, {verification.failed} failed, "
                      f"{verification.skipped} skipped")
    style = _status_style(job.status)
    reason = f": {job.explanation}" if job.explanation else ""
    console.print(f"job {job.id} [{style}]{job.status.value}[/]{escape(reason)}", soft_wrap=True, highlight=False)
    return typer.Exit(0 if job.status is JobStatus.SUCCESSFUL else 1)


@credentials_app.command("put")
def credentials_put(
    name: str = typer.Argument(..., help="the credential's name (lower case letters, digits, '.', '_', '-')"),
    private_key_file: Path = typer.Option(..., "--private-key-file", help="an unencrypted OpenSSH or PEM key"),
    username: str = typer.Option("root", help="the SSH login on the hosts"),
    known_hosts_file: Path | None = typer.Option(None, "--known-hosts-file",
                                                 help="the hosts' keys (default: trust each host on first contact)"),
    description: str = typer.Option("", help="what it is for"),
) -> None:
    """Create an SSH credential, or replace its key; the private key is stored sealed and never shown."""
    from controlplane.automation import flows as job_flows
    from controlplane.automation import service as job_service
    from controlplane.automation.schemas import CredentialIn

    private_key = _read_text(private_key_file, "--private-key-file")
    known_hosts = _read_text(known_hosts_file, "--known-hosts-file") if known_hosts_file else ""
    try:
        data = CredentialIn(username=username, private_key=private_key, known_hosts=known_hosts,
                            description=description)
    except ValidationError as exc:
        for field, reason in _validation_problems(exc):
            err.print(f"[red]error:[/] {escape(f'{field}: {reason}')}", soft_wrap=True)
        raise typer.Exit(2) from None
    ctx = _jobs_context()
    try:
        with transaction(ctx.sessions) as session:
            credential, created = job_service.put_credential(session, clock=ctx.clock, actor=_actor(),
                                                             box=job_flows.secret_box(ctx), name=name, data=data)
            read = job_service.credential_read(credential)
    except AppError as exc:
        raise _jobs_fail(exc) from None
    finally:
        ctx.engine.dispose()
    hosts = f"{read.known_hosts_entries} known host key(s)" if read.known_hosts_entries else \
        "no known host keys (each job trusts a host's key on first contact)"
    console.print(escape(f"{'created' if created else 'updated'} credential '{read.name}' "
                         f"(user {read.username}): {read.fingerprint}; {hosts}"), soft_wrap=True, highlight=False)


@credentials_app.command("list")
def credentials_list() -> None:
    """SSH credentials: name, login, key fingerprint and host keys (never the private key)."""
    from controlplane.automation import service as job_service

    ctx = _jobs_context()
    try:
        with transaction(ctx.sessions) as session:
            rows = [job_service.credential_read(c) for c in job_service.list_credentials(session)]
    finally:
        ctx.engine.dispose()
    table = Table("name", "username", "fingerprint", "known hosts", "description", "updated", title="SSH credentials")
    for row in rows:
        table.add_row(escape(row.name), escape(row.username), row.fingerprint, str(row.known_hosts_entries),
                      escape(row.description or "–"), _local(row.updated_at, ctx.settings))
    _wide().print(table)


@credentials_app.command("delete")
def credentials_delete(name: str = typer.Argument(..., help="the credential's name")) -> None:
    """Delete a credential no job has used."""
    from controlplane.automation import service as job_service

    ctx = _jobs_context()
    try:
        with transaction(ctx.sessions) as session:
            job_service.delete_credential(session, clock=ctx.clock, actor=_actor(), name=name)
    except AppError as exc:
        raise _jobs_fail(exc) from None
    finally:
        ctx.engine.dispose()
    console.print(escape(f"deleted credential '{name}'"))


@jobs_app.command("run")
def jobs_run(
    playbook: str = typer.Argument(..., help="site.yml, migrate_system.yml or verify.yml"),
    credential: str = typer.Option(..., help="the SSH credential to log in with"),
    hosts_file: Path = typer.Option(..., "--hosts-file",
                                    help="YAML: a list of {name, address, groups, vars}"),
    agency: str | None = typer.Option(None, help="the agency whose systems these hosts are"),
    extra_vars: str | None = typer.Option(None, "--extra-vars", help="@file.yaml or a JSON object"),
    secret_vars_file: Path | None = typer.Option(None, "--secret-vars-file",
                                                 help="YAML mapping of secret variables (stored sealed)"),
    limit: str | None = typer.Option(None, help="Ansible --limit pattern"),
    timeout: int | None = typer.Option(None, help="the playbook's time limit in seconds (default 3600)"),
    no_verify: bool = typer.Option(False, "--no-verify", help="skip the roles' testinfra checks"),
) -> None:
    """Record a job and run it here, showing its progress; exit 0 when it succeeded, 1 when not, 2 for bad input."""
    from controlplane.automation import flows as job_flows
    from controlplane.automation import service as job_service
    from controlplane.automation.schemas import JobIn

    request: dict[str, Any] = {"playbook": playbook, "credential": credential, "agency": agency,
                               "hosts": _hosts(hosts_file), "extravars": _extra_vars(extra_vars),
                               "secrets": _secret_vars(secret_vars_file), "limit": limit, "verify": not no_verify}
    if timeout is not None:
        request["timeout_seconds"] = timeout
    try:
        data = JobIn(**request)
    except ValidationError as exc:
        for field, reason in _validation_problems(exc):
            err.print(f"[red]error:[/] {escape(_job_problem(field, reason, hosts_file))}", soft_wrap=True)
        raise typer.Exit(2) from None
    ctx = _jobs_context(run=True)
    try:
        try:
            with transaction(ctx.sessions) as session:
                job_id = job_flows.request_job(session, ctx=ctx, actor=_actor(), data=data).id
        except AppError as exc:
            if exc.field:
                raise _fail(_job_problem(exc.field, exc.message.removeprefix(f"{exc.field}: "), hosts_file),
                            2 if exc.status_code < 500 else 1) from None
            raise _jobs_fail(exc) from None
        err.print(escape(f"job {job_id}: {playbook} on {len(data.hosts)} host(s), running here "
                         f"(Ctrl-C cancels it)"), soft_wrap=True, highlight=False)
        worker = threading.Thread(target=job_flows.run_job, args=(ctx,), kwargs={"job_id": job_id},
                                  name=f"job-{job_id[:8]}", daemon=True)
        worker.start()
        try:
            job = _follow(ctx, job_id)
        except KeyboardInterrupt:
            err.print(escape(f"canceling job {job_id} ..."))
            try:
                with transaction(ctx.sessions) as session:
                    job_flows.cancel_job(session, ctx=ctx, actor=_actor(), job_id=job_id)
                job_flows.signal_cancel(ctx, job_id=job_id)
                job = _follow(ctx, job_id)
            except KeyboardInterrupt:
                with transaction(ctx.sessions) as session:
                    job_service.fail_job(session, clock=ctx.clock, job_id=job_id,
                                         explanation="interrupted: its command was stopped; run it again")
                raise _fail(f"job {job_id} interrupted", 130) from None
            except AppError:  # it ended meanwhile
                job = _follow(ctx, job_id)
        worker.join(timeout=10)
    finally:
        ctx.engine.dispose()
    raise _ended(job)


@jobs_app.command("list")
def jobs_list(
    status: JobStatus | None = typer.Option(None, help="pending, running, successful, failed or canceled"),
    agency: str | None = typer.Option(None, help="agency code"),
) -> None:
    """Jobs, newest first (at most 50)."""
    from controlplane.automation import service as job_service

    ctx = _jobs_context()
    try:
        with transaction(ctx.sessions) as session:
            rows = [job_service.job_read(j) for j in job_service.list_jobs(session, viewer=_actor(), status=status,
                                                                           agency=agency)]
    except AppError as exc:
        raise _jobs_fail(exc) from None
    finally:
        ctx.engine.dispose()
    table = Table("id", "status", "playbook", "agency", "hosts", "requested by", "requested", "finished",
                  "explanation", title="Jobs")
    for row in rows:
        table.add_row(row.id, f"[{_status_style(row.status)}]{row.status.value}[/]", row.playbook,
                      row.agency or "–", str(len(row.hosts)), escape(row.requested_by),
                      _local(row.created_at, ctx.settings), _local(row.finished_at, ctx.settings),
                      escape(row.explanation or ""))
    _wide().print(table)


@jobs_app.command("show")
def jobs_show(job_id: str = typer.Argument(..., help="the job's id")) -> None:
    """One job: status and explanation, per-host totals, and the evidence of its checks."""
    from controlplane.automation import service as job_service

    ctx = _jobs_context()
    try:
        with transaction(ctx.sessions) as session:
            job = job_service.job_read(job_service.get_job(session, viewer=_actor(), job_id=job_id))
            events = job_service.events(session, job_id=job_id, limit=5000)
            checks = job_service.checks(session, job_id=job_id)
    except AppError as exc:
        raise _jobs_fail(exc) from None
    finally:
        ctx.engine.dispose()
    out, settings = _wide(), ctx.settings
    style = _status_style(job.status)
    out.print(f"job {job.id}: [{style}]{job.status.value}[/]"
              + (" (cancel requested)" if job.cancel_requested and not job.status.finished else ""))
    if job.explanation:
        out.print(escape(job.explanation), soft_wrap=True)
    facts = [("playbook", job.playbook), ("credential", job.credential), ("agency", job.agency or "–"),
             ("requested by", job.requested_by), ("requested", _local(job.created_at, settings)),
             ("started", _local(job.started_at, settings)), ("finished", _local(job.finished_at, settings)),
             ("rc", "–" if job.rc is None else str(job.rc)), ("limit", job.limit or "–"),
             ("time limit", f"{job.timeout_seconds} s" if job.timeout_seconds else "–"),
             ("extra vars", json.dumps(job.extravars, ensure_ascii=False) if job.extravars else "–"),
             ("secret vars", ", ".join(job.secret_names) + " (values never shown)" if job.secret_names else "–")]
    for label, value in facts:
        out.print(f"{label}: {escape(value)}", soft_wrap=True, highlight=False)
    progress = _JobProgress(job)
    for event in events:
        progress.add(event)
    out.print(_totals_table(job, _final_totals(job, progress.totals)))
    if not job.verify:
        out.print("verification: not requested")
    elif job.verification is None:
        out.print("verification: no result yet" if not job.status.finished else "verification: did not run")
    else:
        v = job.verification
        out.print(f"verification: {v.passed} passed, {v.failed} failed, {v.skipped} skipped"
                  + (f"; {escape(v.error)}" if v.error else ""), soft_wrap=True)
    if checks:
        out.print(_checks_table([(c.host, c.role, c.check, c.outcome, c.message) for c in checks]))


@jobs_app.command("cancel")
def jobs_cancel(job_id: str = typer.Argument(..., help="the job's id")) -> None:
    """Stop a job: a pending one now, a running one (here or in the server) within a few seconds."""
    from controlplane.automation import flows as job_flows
    from controlplane.automation import service as job_service

    ctx = _jobs_context()
    try:
        with transaction(ctx.sessions) as session:
            job = job_service.job_read(job_flows.cancel_job(session, ctx=ctx, actor=_actor(), job_id=job_id))
    except AppError as exc:
        raise _jobs_fail(exc) from None
    finally:
        ctx.engine.dispose()
    if job.status.finished:
        console.print(escape(f"job {job.id} {job.status.value}: {job.explanation}"), soft_wrap=True)
    else:
        console.print(escape(f"job {job.id}: cancel requested; its runner stops it within a few seconds "
                             f"(controlplane jobs watch {job.id})"), soft_wrap=True, highlight=False)


@jobs_app.command("watch")
def jobs_watch(job_id: str = typer.Argument(..., help="the job's id")) -> None:
    """Follow a job (run here or by the server) until it ends; exit 0 when it succeeded, 1 when not."""
    ctx = _jobs_context()
    try:
        job = _follow(ctx, job_id)
    except AppError as exc:
        raise _jobs_fail(exc) from None
    except KeyboardInterrupt:
        raise _fail(f"stopped watching; job {job_id} goes on (controlplane jobs cancel {job_id} stops it)",
                    130) from None
    finally:
        ctx.engine.dispose()
    raise _ended(job)


def main() -> None:
    app()
