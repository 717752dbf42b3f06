"""`controlplane users|agencies|secrets ...`: accounts, the agency catalogue and the sealed secrets on the command
line, as the CLI's system actor (every write audited)."""

from __future__ import annotations

import sys
from typing import Any

import typer

from controlplane import clikit
from controlplane.auth import audit
from controlplane.auth import service as auth_service
from controlplane.auth.roles import Role
from controlplane.auth.schemas import AgencyCreate, AgencyKind, AgencyUpdate, UserCreate, UserUpdate
from controlplane.db import transaction

users_app = typer.Typer(help="User accounts.", no_args_is_help=True)
agencies_app = typer.Typer(help="Agencies: ministries, offices, agencies and local governments.",
                           no_args_is_help=True)
secrets_app = typer.Typer(help="Secrets sealed at rest under CP_SECRET_KEY.", no_args_is_help=True)

# What each field of a user or agency is called on the command line, for the error messages.
_USER_OPTIONS = {"username": "--username", "role": "--role", "agency_code": "--agency", "full_name": "--full-name",
                 "email": "--email", "active": "--active", "password": "the password"}
_AGENCY_OPTIONS = {"code": "--code", "name_ko": "--name-ko", "name_en": "--name-en", "kind": "--kind",
                   "parent_code": "--parent"}


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    return str(typer.prompt("password", hide_input=True, confirmation_prompt=True))


@users_app.command("create")
@clikit.reports()
def users_create(
    username: str = typer.Option(..., help="login name"),
    role: Role = typer.Option(..., help="admin, operator, secretariat, ministry or auditor"),
    agency: str | None = typer.Option(None, help="agency code (required for role ministry)"),
    full_name: str = typer.Option("", help="display name"),
    email: str | None = typer.Option(None),
    password_stdin: bool = typer.Option(False, help="read the password from standard input"),
) -> None:
    """Create a user account (the password is asked for, or read from stdin)."""
    password = _password(password_stdin)
    data = clikit.validated(UserCreate, {"username": username, "password": password, "role": role,
                                         "agency_code": agency, "full_name": full_name, "email": email},
                            options=_USER_OPTIONS)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        user = auth_service.create_user(session, clock=ctx.clock, actor=clikit.actor(), data=data)
        clikit.say(f"created user '{user.username}' ({user.role})")


@users_app.command("update")
@clikit.reports()
def users_update(
    username: str = typer.Argument(..., help="login name"),
    role: Role | None = typer.Option(None, help="admin, operator, secretariat, ministry or auditor"),
    agency: str | None = typer.Option(None, help="agency code ('' for none)"),
    full_name: str | None = typer.Option(None, help="display name"),
    email: str | None = typer.Option(None),
    active: bool | None = typer.Option(None, "--active/--inactive", help="allow or stop the user's logins"),
    password: bool = typer.Option(False, "--password", help="set a new password (asked for)"),
    password_stdin: bool = typer.Option(False, help="set a new password read from standard input"),
) -> None:
    """Change a user (audited); a new password revokes the user's tokens and API keys, deactivation the tokens."""
    changes: dict[str, Any] = {name: value for name, value in (
        ("role", role), ("full_name", full_name), ("email", email), ("active", active)) if value is not None}
    if agency is not None:
        changes["agency_code"] = agency or None
    if password or password_stdin:
        changes["password"] = _password(password_stdin)
    if not changes:
        raise clikit.refuse("nothing to change: give --role, --agency, --full-name, --email, --active/--inactive "
                            "or --password")
    data = clikit.validated(UserUpdate, changes, options=_USER_OPTIONS)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        user, revoked = auth_service.update_user(session, clock=ctx.clock, actor=clikit.actor(), username=username,
                                                 data=data)
        read = auth_service.user_read(user)
    clikit.say(f"updated user '{read.username}' ({read.role.value}, agency {read.agency_code or '–'}, "
               f"{'active' if read.active else 'inactive'})"
               + (f"; revoked {revoked.tokens} token(s) and {revoked.api_keys} API key(s)"
                  if revoked.tokens or revoked.api_keys else ""))


@users_app.command("unlock")
@clikit.reports()
def users_unlock(username: str = typer.Argument(..., help="login name")) -> None:
    """Lift the login throttle of USERNAME from every client address (audited); an address throttled for failing
    across many names stays throttled until its delay has passed."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        result = auth_service.unlock_user(session, clock=ctx.clock, actor=clikit.actor(), username=username)
    clikit.say(f"unlocked '{username}': failed logins from {result.cleared} address(es) forgotten, "
               f"{result.were_locked} of them locked")


@agencies_app.command("create")
@clikit.reports(fields={"code": "agency"})
def agencies_create(
    code: str = typer.Option(..., help="upper-case code, e.g. MOIS"),
    name_ko: str = typer.Option(..., help="Korean name"),
    name_en: str = typer.Option(..., help="English name"),
    kind: AgencyKind = typer.Option(..., help="ministry, office, agency or local_government"),
    parent: str | None = typer.Option(None, help="the parent agency's code"),
) -> None:
    """Add an agency (audited)."""
    data = clikit.validated(AgencyCreate, {"code": code, "name_ko": name_ko, "name_en": name_en, "kind": kind,
                                           "parent_code": parent}, options=_AGENCY_OPTIONS)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        agency = auth_service.agency_read(
            auth_service.create_agency(session, clock=ctx.clock, actor=clikit.actor(), data=data))
    clikit.say(f"created agency {agency.code} ({agency.kind}): {agency.name_ko} / {agency.name_en}")


@agencies_app.command("update")
@clikit.reports(fields={"code": "agency"})
def agencies_update(
    code: str = typer.Argument(..., help="the agency's code"),
    name_ko: str | None = typer.Option(None, help="Korean name"),
    name_en: str | None = typer.Option(None, help="English name"),
    kind: AgencyKind | None = typer.Option(None, help="ministry, office, agency or local_government"),
) -> None:
    """Rename an agency or change its kind (audited)."""
    changes = {name: value for name, value in (("name_ko", name_ko), ("name_en", name_en), ("kind", kind))
               if value is not None}
    if not changes:
        raise clikit.refuse("nothing to change: give --name-ko, --name-en or --kind")
    data = clikit.validated(AgencyUpdate, changes, options=_AGENCY_OPTIONS)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        agency = auth_service.agency_read(
            auth_service.update_agency(session, clock=ctx.clock, actor=clikit.actor(), code=code, data=data))
    clikit.say(f"updated agency {agency.code} ({agency.kind}): {agency.name_ko} / {agency.name_en}")


def _sealed_columns() -> list[Any]:
    """Every column holding a sealed value (named *_sealed): the secrets of every domain are re-sealed together,
    so this command lists their models; controlplane.secrets stays below them and knows none."""
    from controlplane.automation.models import Credential, Job
    from controlplane.cloud.models import CloudTenancy
    from controlplane.rooms.models import Bridge, BridgeRoom
    from controlplane.waves.models import Migration

    return [column for model in (CloudTenancy, Credential, Job, Migration, Bridge, BridgeRoom)
            for column in model.__table__.columns if column.name.endswith("_sealed")]


@secrets_app.command("rotate")
@clikit.reports()
def secrets_rotate() -> None:
    """Re-seal every sealed value under CP_SECRET_KEY (those sealed under a key of CP_SECRET_KEY_PREVIOUS), in one
    transaction: all or nothing. Afterwards CP_SECRET_KEY_PREVIOUS can be emptied."""
    from controlplane.secrets import SecretBox, SecretError, reseal_columns

    with clikit.context() as ctx:
        settings = ctx.settings
        box = SecretBox(settings.secret_key, previous=settings.previous_secret_keys)
        try:
            with transaction(ctx.sessions) as session:
                counts = reseal_columns(session, box=box, columns=_sealed_columns())
                audit.record(session, clock=ctx.clock, actor=clikit.actor(), action="rotate",
                             entity_type="secret_key",
                             after={"resealed": {name: c.resealed for name, c in counts.items()},
                                    "previous_keys": len(settings.previous_secret_keys)})
        except SecretError as exc:
            raise clikit.fail(f"{exc}. Nothing was changed: add the key they were sealed with to "
                              "CP_SECRET_KEY_PREVIOUS and run it again") from None
    for name, count in counts.items():
        clikit.say(f"{name}: {count.resealed} re-sealed, {count.current} already under the current key")
    total = sum(c.resealed for c in counts.values())
    clikit.say(f"re-sealed {total} value(s) under CP_SECRET_KEY")
