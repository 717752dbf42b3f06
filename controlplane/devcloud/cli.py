"""`controlplane devcloud up|down|status|logs|env`: the local OpenStack dev cloud."""

from __future__ import annotations

import subprocess
import time

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from controlplane.devcloud.cloud import SERVICE_NAMES, DevCloud
from controlplane.devcloud.processes import DevCloudError

devcloud_app = typer.Typer(help="The local OpenStack dev cloud (servers are real Debian hosts).", no_args_is_help=True)
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
