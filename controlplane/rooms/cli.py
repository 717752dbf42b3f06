"""`controlplane rooms ...`: the VC network on the command line: sync the catalogue (the diff, then all of it or
nothing), list rooms with their live state, show one with its history, take one out of service and back; the
sites, smart-work centres and bridges (as the CLI's system actor, audited)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import typer

from controlplane import clikit
from controlplane.db import transaction
from controlplane.rooms import deploy, reconcile, service
from controlplane.rooms.domain import REGIONS
from controlplane.rooms.schemas import BridgeEndpointIn
from controlplane.secrets import secret_box

rooms_app = typer.Typer(help="The VC network: catalogue sync, rooms and their state, sites, centres, bridges.",
                        no_args_is_help=True)
bridges_app = typer.Typer(help="The VC network's bridges.", no_args_is_help=True)


def _finding_lines(details: list[dict[str, Any]]) -> list[str]:
    return [f"  {d['file']}:{d['line']}: {d['field']}: {d['reason']}" for d in details]


@rooms_app.command("sync")
@clikit.reports(_finding_lines)
def rooms_sync(
    catalogue: Path | None = typer.Option(None, help="the catalogue's directory (default CP_ROOMS_CATALOGUE_DIR, "
                                                     "the project's rooms/)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print the changes, apply nothing"),
) -> None:
    """Apply the catalogue's files: print what changes (+ added or restored, ~ changed, - retired), all or nothing.
    A room that left the files is retired with its history, never deleted."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        parsed, digest = service.read_files(session, settings=ctx.settings, directory=catalogue)
        if dry_run:
            changes = service.plan_sync(session, catalogue=parsed)
        else:
            changes = service.apply_sync(session, clock=ctx.clock, actor=clikit.actor(), catalogue=parsed,
                                         digest=digest)
    for change in changes:
        clikit.say(str(change))
    counts = ", ".join(f"{n} {what}" for what, n in service.summary(changes).items()) or "nothing to change"
    where = "would change" if dry_run else "applied"
    clikit.say(f"catalogue {digest[:12]}: {len(parsed.sites)} sites, {len(parsed.rooms)} rooms, "
               f"{len(parsed.bridges)} bridges; {where}: {counts}")


@rooms_app.command("list")
@clikit.reports()
def rooms_list(
    site: str | None = typer.Option(None, help="a site's code"),
    agency: str | None = typer.Option(None, help="an agency's code"),
    region: str | None = typer.Option(None, help=f"one of {', '.join(REGIONS)}"),
    state: str | None = typer.Option(None, help=f"one of {', '.join(service.ROOM_STATES)}"),
    retired: bool = typer.Option(False, "--retired", help="the rooms that left the catalogue instead"),
) -> None:
    """Rooms with their live state (as the prober last saw them)."""
    if state and state not in service.ROOM_STATES:
        raise clikit.refuse(f"must be one of {', '.join(service.ROOM_STATES)}", field="state")
    if region and region not in REGIONS:
        raise clikit.refuse(f"must be one of {', '.join(REGIONS)}", field="region")
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        rooms = service.list_rooms(session, site=site, agency=agency, state=state, region=region, retired=retired)
        table = clikit.table("room", "state", "site", "agency", "building", "floor", "capacity", "endpoint", "since",
                             right=("floor", "capacity"))
        for room in rooms:
            table.add_row(room.code, service.room_state(room), room.site.code, room.agency.code, room.building,
                          str(room.floor), str(room.capacity), f"{room.sip_uri} {room.address}:{room.port}",
                          clikit.local(room.state_since, ctx.settings))
    clikit.console.print(table)
    clikit.say(f"{len(rooms)} rooms")


@rooms_app.command("show")
@clikit.reports()
def rooms_show(code: str = typer.Argument(..., help="the room's code")) -> None:
    """One room: where it is, its endpoint, its state and its latest events."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        room = service.get_room(session, code=code)
        events = service.room_events(session, room=room, limit=20)
        settings = ctx.settings
        lines = [f"room {room.code}: {room.name}",
                 f"  state: {service.room_state(room)} since {clikit.local(room.state_since, settings)}"
                 + (f" (out of service: {room.out_of_service})" if room.out_of_service else ""),
                 f"  site: {room.site.code} ({room.site.name}), {room.building} floor {room.floor}",
                 f"  agency: {room.agency.code}; owner: {room.owner or '–'}; capacity {room.capacity}",
                 f"  endpoint: {room.sip_uri} at {room.address}:{room.port} ({room.protocol})",
                 f"  equipment: {', '.join(room.equipment) or '–'}",
                 f"  last probe: {clikit.local(room.last_probe_at, settings)} {room.last_result}"]
        if room.retired_at:
            lines.append(f"  retired: {clikit.local(room.retired_at, settings)}")
        lines.append("  events:")
        lines += [f"    {clikit.local(e.at, settings)} {e.kind}: {e.before or '–'} -> {e.after} {e.detail}".rstrip()
                  for e in events]
    clikit.say("\n".join(lines))


@rooms_app.command("out-of-service")
@clikit.reports()
def rooms_out_of_service(
    code: str = typer.Argument(..., help="the room's code"),
    reason: str = typer.Option(..., help="why (shown with the room, kept in its history and the audit log)"),
) -> None:
    """Take a room out of service: it is shown as such, and neither alerts nor gets meetings."""
    reason = reason.strip()
    if not reason or len(reason) > 300:
        raise clikit.refuse("must be 1 to 300 characters", field="reason")
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        service.set_service(session, clock=ctx.clock, actor=clikit.actor(), code=code, reason=reason)
    clikit.say(f"room {code} is out of service: {reason}")


@rooms_app.command("in-service")
@clikit.reports()
def rooms_in_service(code: str = typer.Argument(..., help="the room's code")) -> None:
    """Put a room back into service."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        service.set_service(session, clock=ctx.clock, actor=clikit.actor(), code=code, reason=None)
    clikit.say(f"room {code} is back in service")


@rooms_app.command("sites")
@clikit.reports()
def rooms_sites(
    kind: str | None = typer.Option(None, help="complex, ministry, local_government or smart_work_centre"),
    region: str | None = typer.Option(None, help=f"one of {', '.join(REGIONS)}"),
) -> None:
    """Sites by region, with their rooms counted by state (smart-work centres with their seats and hours)."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        sites = service.list_sites(session, kind=kind, region=region)
        table = clikit.table("site", "kind", "region", "name", "up", "down", "unknown", "out", "seats", "hours",
                             right=("up", "down", "unknown", "out", "seats"))
        for site, counts in sites:
            table.add_row(site.code, site.kind, site.region, site.name, str(counts["up"]), str(counts["down"]),
                          str(counts["unknown"]), str(counts["out_of_service"]), str(site.seats or "–"),
                          f"{site.opening_hours} {','.join(site.opening_days)}" if site.seats else "–")
    clikit.console.print(table)
    clikit.say(f"{len(sites)} sites")


@bridges_app.command("list")
@clikit.reports()
def bridges_list() -> None:
    """Bridges with their state and load against capacity."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        bridges = service.list_bridges(session)
        table = clikit.table("bridge", "state", "site", "server", "address", "rooms", "participants", "since",
                             right=("rooms", "participants"))
        for bridge in bridges:
            table.add_row(bridge.code, bridge.state, bridge.site.code, bridge.server, bridge.address or "–",
                          f"{bridge.rooms_in_use}/{bridge.rooms_capacity}",
                          f"{bridge.participants}/{bridge.participants_capacity}",
                          clikit.local(bridge.state_since, ctx.settings))
    clikit.console.print(table)
    clikit.say(f"{len(bridges)} bridges")


@bridges_app.command("register")
@clikit.reports()
def bridges_register(
    code: str = typer.Argument(..., help="the bridge's code in the catalogue"),
    address: str = typer.Option(..., help="its IP address (inside CP_ROOMS_ALLOWED_NETWORKS)"),
    admin_secret_file: Path = typer.Option(..., help="a file holding its admin secret (never printed)"),
    http_port: int = typer.Option(8088, min=1, max=65535),
    admin_port: int = typer.Option(7088, min=1, max=65535),
) -> None:
    """Say where a catalogue bridge answers and its admin secret (sealed; `bridges deploy` does this itself)."""
    secret = clikit.read_text(admin_secret_file, "--admin-secret-file").strip()
    data = clikit.validated(BridgeEndpointIn, {"address": address, "http_port": http_port, "admin_port": admin_port,
                                               "admin_secret": secret},
                            options={"address": "--address", "admin_secret": "--admin-secret-file"})
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        service.register_bridge(session, clock=ctx.clock, actor=clikit.actor(), box=secret_box(ctx.settings),
                                settings=ctx.settings, code=code, address=data.address, http_port=data.http_port,
                                admin_port=data.admin_port, admin_secret=data.admin_secret)
    clikit.say(f"bridge {code} answers at {data.address}:{data.http_port} (admin {data.admin_port}); its admin "
               "secret is stored sealed")


@bridges_app.command("deploy")
@clikit.reports()
def bridges_deploy(
    count: int = typer.Argument(..., min=1, max=50, help="how many of the catalogue's bridges not deployed yet"),
    credential: str = typer.Option(..., help="the SSH credential whose key the operations agency's servers get"),
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait until they are deployed (or failed)"),
    timeout: float = typer.Option(1800, min=1, help="seconds to wait at most"),
) -> None:
    """Deploy bridges on the cloud: a server each in CP_ROOMS_OPERATIONS_AGENCY's project, configured by the
    janus_bridge role, registered, then the rooms reconciled onto them. Adding capacity is adding bridges to the
    catalogue and deploying them."""
    with clikit.context() as ctx, clikit.engine_here_or_client(ctx):
        codes = deploy.request(ctx, actor=clikit.actor(), count=count, credential=credential)
        clikit.say(f"deploying {', '.join(codes)}")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while True:
            with transaction(ctx.sessions) as session:
                states = {b.code: (b.state, b.address, b.last_error) for b in service.list_bridges(session)
                          if b.code in codes}
            if all(state != "deploying" for state, _a, _e in states.values()) or time.monotonic() > deadline:
                break
            time.sleep(1)
    for code, (state, address, error) in states.items():
        clikit.say(f"bridge {code}: {state}" + (f" at {address}" if address else "") + (f": {error}" if error else ""))
    if any(state in ("deploying", "failed") for state, _a, _e in states.values()):
        raise typer.Exit(clikit.FAILED)


@bridges_app.command("reconcile")
@clikit.reports()
def bridges_reconcile(
    wait: bool = typer.Option(True, "--wait/--no-wait", help="wait for its report"),
    timeout: float = typer.Option(300, min=1, help="seconds to wait at most"),
) -> None:
    """Reconcile the bridges and their rooms now: health, placement, missing rooms made, ours destroyed where they
    no longer belong, unknown ones reported."""
    with clikit.context() as ctx, clikit.engine_here_or_client(ctx):
        reconcile_id = reconcile.request(ctx, actor=clikit.actor())
        clikit.say(f"reconcile {reconcile_id} queued")
        if not wait:
            return
        deadline = time.monotonic() + timeout
        while True:
            with transaction(ctx.sessions) as session:
                row = service.get_reconcile(session, reconcile_id=reconcile_id)
                state, report = row.state, dict(row.report)
            if state in ("succeeded", "failed") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    for line in report_lines(state, report):
        clikit.say(line)
    if state != "succeeded":
        raise typer.Exit(clikit.FAILED)


def report_lines(state: str, report: dict[str, Any]) -> list[str]:
    lines = [f"reconcile {state}"]
    for code, health in report.get("bridges", {}).items():
        lines.append(f"  bridge {code}: {health}")
    for key, title in (("moved", "moved"), ("unplaced", "unplaced (no bridge has room)"), ("created", "created"),
                       ("destroyed", "destroyed"), ("unknown", "unknown rooms (not touched)"), ("errors", "errors")):
        for item in report.get(key, []):
            lines.append(f"  {title}: {item}")
    return lines
