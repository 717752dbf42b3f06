"""The `controlplane` command line (also `python -m controlplane`): the root only assembles each domain's commands
(their `cli.py`, built on controlplane.clikit) and keeps the few that concern the whole: serve, the database
schema, the seed and the first start."""

from __future__ import annotations

import os
import secrets
from datetime import date

import typer
from sqlalchemy import select

from controlplane import clikit
from controlplane.auth import audit
from controlplane.auth import service as auth_service
from controlplane.auth.cli import agencies_app, secrets_app, users_app
from controlplane.auth.models import User
from controlplane.auth.roles import Role
from controlplane.auth.schemas import UserCreate
from controlplane.automation.cli import credentials_app, jobs_app
from controlplane.cloud.cli import cloud_app
from controlplane.compliance import demo
from controlplane.compliance import service as compliance_service
from controlplane.compliance.cli import compliance_app
from controlplane.db import transaction
from controlplane.devcloud.cli import devcloud_app
from controlplane.inventory.cli import catalogue_app, systems_app
from controlplane.inventory.cli import commands_app as inventory_commands
from controlplane.rooms.cli import bridges_app, rooms_app
from controlplane.waves.cli import commands_app as waves_commands
from controlplane.waves.cli import waves_app

app = typer.Typer(
    help="Control plane of the integrated cloud and video-conference network.", no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
for sub_app, name in ((db_app, "db"), (users_app, "users"), (agencies_app, "agencies"), (secrets_app, "secrets"),
                      (compliance_app, "compliance"), (devcloud_app, "devcloud"), (cloud_app, "cloud"),
                      (credentials_app, "credentials"), (jobs_app, "jobs"), (systems_app, "systems"),
                      (catalogue_app, "catalogue"), (waves_app, "waves"), (rooms_app, "rooms"),
                      (bridges_app, "bridges")):
    app.add_typer(sub_app, name=name)
app.add_typer(inventory_commands)  # adoption, plan
app.add_typer(waves_commands)  # worker


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="address to bind"),
    port: int = typer.Option(8000, help="port to bind"),
) -> None:
    """Serve the API and the web pages."""
    import uvicorn

    from controlplane.app import create_app

    uvicorn.run(create_app(clikit.settings()), host=host, port=port, log_level="info", proxy_headers=False)


@db_app.command("upgrade")
def db_upgrade(revision: str = typer.Option("head", help="target revision")) -> None:
    """Apply the schema migrations."""
    from controlplane.migrations import upgrade

    upgrade(clikit.settings().effective_database_url, revision)
    clikit.say(f"database at revision {revision}")


@app.command()
@clikit.reports()
def seed(
    demo_sessions: bool = typer.Option(False, help="also add plausible session history (demo data)"),
) -> None:
    """Load the agency catalogue, the policies and the designated meetings (idempotent)."""
    actor = clikit.actor()
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        clock = ctx.clock
        agencies = auth_service.seed_agencies(session, clock=clock, actor=actor)
        policies = compliance_service.seed_policies(session, clock=clock, actor=actor)
        meetings = compliance_service.seed_meetings(session, clock=clock, actor=actor)
        sessions = 0
        if demo_sessions:
            sessions = demo.load_demo_sessions(
                session, clock=clock, start=date(2011, 1, 1), end=date(clock.today().year, 12, 31)
            )
            if sessions:
                audit.record(session, clock=clock, actor=actor, action="import", entity_type="session",
                             after={"source": "demo", "imported": sessions})
    clikit.say(f"seeded: {agencies} new agencies, {policies} new policies, {meetings} new meetings, "
               f"{sessions} demo sessions")


@app.command()
@clikit.reports()
def init(
    demo_sessions: bool = typer.Option(False, help="also add plausible session history (demo data)"),
) -> None:
    """Upgrade the database, load the catalogue and make sure an admin account exists."""
    db_upgrade("head")
    seed(demo_sessions)
    with clikit.context() as ctx:
        settings = ctx.settings
        with transaction(ctx.sessions) as session:
            if session.scalar(select(User.id).where(User.role == Role.ADMIN.value)) is not None:
                return
            password = settings.bootstrap_admin_password or secrets.token_urlsafe(18)
            auth_service.create_user(session, clock=ctx.clock, actor=clikit.actor(), data=UserCreate(
                username="admin", password=password, full_name="Administrator", role=Role.ADMIN,
            ))
    if not settings.bootstrap_admin_password:
        secret_file = settings.data_dir / "initial-admin-password"
        secret_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(password + "\n")
        clikit.say(f"created user 'admin'; its initial password is in {secret_file} (readable by you only)")
    else:
        clikit.say("created user 'admin' with the password from CP_BOOTSTRAP_ADMIN_PASSWORD")


def main() -> None:
    app()
