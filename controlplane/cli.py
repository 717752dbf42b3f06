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
from controlplane.compliance import demo, tabular
from controlplane.compliance import service as compliance_service
from controlplane.compliance.domain import PeriodError, parse_period
from controlplane.config import Settings
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
app.add_typer(db_app, name="db")
app.add_typer(users_app, name="users")
app.add_typer(compliance_app, name="compliance")
app.add_typer(devcloud_app, name="devcloud")

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


def main() -> None:
    app()
