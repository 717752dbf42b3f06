"""`controlplane devcloud up|down|status|logs|env`: the local OpenStack dev cloud; `controlplane devcloud estate
up|show|down`: the rehearsal estate on it (controlplane.devcloud.estate)."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from controlplane import clikit
from controlplane.auth.schemas import AGENCY_CODE
from controlplane.devcloud.cloud import SERVICE_NAMES, DevCloud
from controlplane.devcloud.estate import Estate, Outcome
from controlplane.devcloud.processes import DevCloudError
from controlplane.devcloud.samples import AGENCY, LEGACY_APP, NEW_APP, Names

devcloud_app = typer.Typer(help="The local OpenStack dev cloud (servers are real Debian hosts).", no_args_is_help=True)
estate_app = typer.Typer(help="A rehearsal estate on the dev cloud: the legacy side of two sample systems of an "
                              "agency (database, application server, the users' nginx front) and a ready wave file.",
                         no_args_is_help=True)
devcloud_app.add_typer(estate_app, name="estate")
console = Console()
err = Console(stderr=True)


def _fail(exc: Exception) -> None:
    err.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(1)


@devcloud_app.command()
def up() -> None:
    """Install (once), configure and start the dev cloud; a no-op when it is running."""
    cloud = DevCloud.default()
    started = time.monotonic()
    try:
        cloud.up(progress=lambda message: err.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {escape(message)}"))
    except DevCloudError as exc:
        _fail(exc)
    console.print(f"clouds.yaml: {cloud.clouds_yaml} (cloud {cloud.cloud_name}); eval \"$(controlplane devcloud env)\"")


@devcloud_app.command()
def down(purge: bool = typer.Option(False, help="Also delete the dev cloud's data (databases, images, keys).")) -> None:
    """Stop every process, host, mount and namespace the dev cloud started."""
    try:
        stopped = DevCloud.default().down(purge=purge)
    except DevCloudError as exc:
        _fail(exc)
    console.print(f"stopped: {', '.join(stopped) or 'nothing was running'}" + ("; data deleted" if purge else ""))


@devcloud_app.command()
def status() -> None:
    """Each service with its PID and port; exit 1 unless all run."""
    services = DevCloud.default().status()
    table = Table("service", "state", "pid", "port")
    for service in services:
        table.add_row(service.name, "[green]running[/green]" if service.running else "[red]stopped[/red]",
                      str(service.pid or "-"), str(service.port or "-"))
    console.print(table)
    if not all(service.running for service in services):
        raise typer.Exit(1)


@devcloud_app.command()
def logs(
    service: str = typer.Argument("nova-compute", help=f"One of: {', '.join(SERVICE_NAMES)}, setup."),
    lines: int = typer.Option(50, "-n", "--lines", min=1),
    follow: bool = typer.Option(False, "-f", "--follow"),
) -> None:
    """The last lines of a service's log."""
    if service not in (*SERVICE_NAMES, "setup"):
        err.print(f"[red]error:[/red] unknown service {escape(service)!r}; one of: {', '.join(SERVICE_NAMES)}, setup")
        raise typer.Exit(2)
    log = DevCloud.default().supervisor.log_file(service)
    if not log.exists():
        err.print(f"[red]error:[/red] no log yet at {log}")
        raise typer.Exit(1)
    subprocess.run(["tail", f"-n{lines}", *(["-F"] if follow else []), str(log)], check=False)  # noqa: S603,S607


@devcloud_app.command()
def env() -> None:
    """Shell exports for openstacksdk and the openstack client: eval "$(controlplane devcloud env)"."""
    typer.echo(DevCloud.default().env_exports(), nl=False)


# --- the rehearsal estate ------------------------------------------------------------------------------------

_AGENCY = typer.Option(AGENCY, "--agency", help="the estate's agency (created when missing)")


def _agency(code: str) -> str:
    if not re.fullmatch(AGENCY_CODE, code) or not code[0].isalpha():
        raise clikit.refuse("2-16 upper-case letters, digits or _, starting with a letter", field="--agency")
    return code


def _progress(started: float) -> Callable[[str], None]:
    def say(line: str) -> None:
        err.print(f"[dim]{time.monotonic() - started:6.1f}s[/dim] {escape(line)}", soft_wrap=True, highlight=False)

    return say


def _next_steps(outcome: Outcome, names: Names) -> list[tuple[str, str]]:
    front = outcome.hosts["front"].address
    return [(f"controlplane waves create {outcome.wave_file}", "prints the wave's id: N below"),
            ("controlplane waves run N --watch", "until both await approval (a few minutes)"),
            ("controlplane waves approve N --all", "cutover: the front goes to the new Tomcat"),
            ("controlplane waves watch N", "until both are cut_over (the soak)"),
            (f"curl -s http://{front}/", NEW_APP),
            (f"controlplane waves rollback N --system {names.app_system}", "during the soak: the front back"),
            (f"controlplane waves rollback N --system {names.db_system} --confirm-writes-since-cutover", ""),
            ("controlplane waves watch N", f"until both are rolled_back; curl -s http://{front}/: {LEGACY_APP}"),
            (f"controlplane devcloud estate down{'' if names.agency == AGENCY else ' --agency ' + names.agency}", "")]


@estate_app.command("up")
@clikit.reports()
def estate_up(agency: str = _AGENCY) -> None:
    """Make (or find) the estate: the agency onboarded, its key as a credential, two systems, three legacy hosts
    configured by a playbook job, the artifacts, a dump of the legacy database and a ready wave file. A second run
    changes nothing."""
    started = time.monotonic()
    with clikit.context() as ctx:
        estate = Estate(ctx, agency=_agency(agency), actor=clikit.actor(), say=_progress(started))
        outcome = estate.up()
    changes = sum(change.changed for change in outcome.changes)
    clikit.say(f"estate of {agency} ready in {time.monotonic() - started:.0f} s: "
               + (f"{changes} change(s)" if changes else "nothing changed"))
    hosts = outcome.hosts
    table = clikit.table("host", "server", "address", "what", title=f"Rehearsal estate of {agency}")
    table.add_row("users' front", hosts["front"].name, hosts["front"].address,
                  f"nginx: http://{hosts['front'].address}/ proxies to the legacy application")
    table.add_row("legacy app", hosts["app"].name, f"{hosts['app'].address}:8080",
                  f"Tomcat standing in for WebLogic: {LEGACY_APP!r} at /")
    table.add_row("legacy db", hosts["db"].name, f"{hosts['db'].address}:5432",
                  f"PostgreSQL, database {estate.names.database} with the legacy data")
    clikit.console.print(table)
    clikit.say(f"wave file: {outcome.wave_file} (wave {outcome.wave_name}); next:")
    for command, note in _next_steps(outcome, estate.names):
        clikit.say(f"  {command}" + (f"    # {note}" if note else ""))


@estate_app.command("show")
@clikit.reports()
def estate_show(agency: str = _AGENCY) -> None:
    """The estate: its agency's tenancy, hosts, the other servers of its project, its systems and the waves that
    hold them, its files."""
    with clikit.context() as ctx:
        status = Estate(ctx, agency=_agency(agency), actor=clikit.actor()).show()
    if status.tenancy is None:
        clikit.say(f"no estate of {agency}: `controlplane devcloud estate up` makes it")
        return
    clikit.say(f"{agency}: tenancy {status.tenancy}, network {status.cidr}")
    servers = clikit.table("role", "server", "address", "status", "id", title="Servers of its project")
    for host in status.hosts:
        servers.add_row(host.role, host.name, host.address, host.status, host.id)
    for other in status.others:
        servers.add_row("(migration)", other.name, ", ".join(other.addresses), other.status, other.id)
    clikit.console.print(servers)
    systems = clikit.table("system", "status", "waves", title="Systems")
    for code, state in status.systems.items():
        waves = ", ".join(f"{wave} {name}: {m_state}" for wave, name, system, m_state in status.waves
                          if system == code)
        systems.add_row(code, state, waves or "–")
    clikit.console.print(systems)
    for path in status.files:
        clikit.say(f"file: {path}")
    clikit.say(f"wave file: {status.wave_file or '– (estate up writes it)'}")


@estate_app.command("down")
@clikit.reports()
def estate_down(
    agency: str = _AGENCY,
    with_migrations: bool = typer.Option(False, "--with-migrations",
                                         help="also delete the servers migrations of its systems left in its "
                                              "project (instead of rolling them back)"),
) -> None:
    """Delete the estate's hosts and files; keep its agency, onboarding, credential, key and systems. Refused while
    a migration of its systems runs."""
    started = time.monotonic()
    with clikit.context() as ctx:
        outcome = Estate(ctx, agency=_agency(agency), actor=clikit.actor(), say=_progress(started)).down(
            with_migrations=with_migrations)
    deleted = [change for change in outcome.changes if change.action == "deleted"]
    clikit.say(f"estate of {agency} removed in {time.monotonic() - started:.0f} s: {len(deleted)} deleted")
