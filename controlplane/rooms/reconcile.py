"""Reconcile the bridges and their rooms: ask each deployed bridge how it is (a bridge that does not answer is
down, and its rooms move), place every room that needs a persistent video room on the least-loaded healthy
bridge with capacity, then make each healthy bridge hold exactly its rooms: a room missing (destroyed behind the
control plane's back, or a restarted bridge) is created again, a room of ours that moved away or was retired is
destroyed, and a room the control plane did not make is reported, never touched.

Runs as durable work (one at a time across processes): on a schedule (CP_ROOMS_RECONCILE_SECONDS, one per period
across engines, like the probes) and when an operator asks. Each run is a Reconcile row with its report. Safe to
repeat: every action looks at what is there first."""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import ExitStack, suppress
from dataclasses import asdict, dataclass, field
from typing import Any

from controlplane.auth import audit
from controlplane.context import AppContext, BridgePort
from controlplane.db import transaction
from controlplane.rooms import domain, service
from controlplane.rooms.errors import BridgeFailure, RoomExists, RoomMissing
from controlplane.rooms.metrics import refresh_rooms
from controlplane.secrets import secret_box

log = logging.getLogger(__name__)
RECONCILE_QUEUE = "cp-vc-reconcile"
RECONCILE_WORKFLOW = "cp.vc_reconcile"


@dataclass
class ReconcileReport:
    bridges: dict[str, str] = field(default_factory=dict)  # code -> up, down (why), not deployed
    moved: list[str] = field(default_factory=list)
    unplaced: list[str] = field(default_factory=list)
    created: list[str] = field(default_factory=list)
    destroyed: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def reconcile(ctx: AppContext) -> ReconcileReport:
    box = secret_box(ctx.settings)
    report = ReconcileReport()
    with ExitStack() as clients_open:
        healthy, _changes = _check_bridges(ctx, box, report, clients_open)
        with transaction(ctx.sessions) as session:
            dropped = service.drop_retired_bridge_rooms(session)
            rooms, slots = service.placement_inputs(session)
            moves = domain.place(rooms, slots)
            service.apply_placements(session, clock=ctx.clock, box=box, moves=moves)
            ours = service.known_secrets(session, box=box)
        ours.update({number: box.open(sealed) for _room, _bridge, number, sealed in dropped})
        report.moved = [f"{m.room}: {m.before or '-'} -> {m.after}" for m in moves if m.after]
        report.unplaced = [m.room for m in moves if m.after is None]
        for code, client in healthy.items():
            try:
                _reconcile_bridge(ctx, box, code, client, ours, report)
            except BridgeFailure as exc:
                report.errors.append(f"{code}: {exc}")
    refresh_rooms(ctx)
    return report


def check_bridges(ctx: AppContext) -> list[tuple[str, str, str]]:
    """Ask every deployed bridge for its load and record up or down (each probe cycle does, between reconciles):
    (bridge, before, after) of each change."""
    with ExitStack() as clients_open:
        _healthy, changes = _check_bridges(ctx, secret_box(ctx.settings), ReconcileReport(), clients_open)
    return changes


def _check_bridges(ctx: AppContext, box: Any, report: ReconcileReport,
                   clients_open: ExitStack) -> tuple[dict[str, BridgePort], list[tuple[str, str, str]]]:
    """Ask every deployed bridge for its load; record up or down; the clients of those that answered, and the
    changes."""
    with transaction(ctx.sessions) as session:
        addresses = [(b.code, service.bridge_address(b, box)) for b in service.list_bridges(session)]
    healthy: dict[str, BridgePort] = {}
    changes: list[tuple[str, str, str]] = []
    for code, address in addresses:
        if address is None:
            report.bridges[code] = "not deployed"
            continue
        client = ctx.bridge(address)
        clients_open.callback(client.close)
        try:
            load, error = client.load(), ""
        except BridgeFailure as exc:
            load, error = None, str(exc)
        with transaction(ctx.sessions) as session:
            change = service.record_bridge_health(session, clock=ctx.clock, code=code, load=load, error=error)
        if change:
            log.warning("bridge %s: %s -> %s %s", code, change[0], change[1], error)
            changes.append((code, *change))
        report.bridges[code] = "up" if load is not None else f"down: {error}"
        if load is not None:
            healthy[code] = client
    return healthy, changes


def _reconcile_bridge(ctx: AppContext, box: Any, code: str, client: BridgePort, ours: dict[int, str],
                      report: ReconcileReport) -> None:
    with transaction(ctx.sessions) as session:
        expected = {e.number: e for e in service.expected_rooms(session, bridge=code, box=box)}
    actual = {r.room: r for r in client.list_rooms()}
    for number, room in sorted(expected.items()):
        if number in actual:
            continue
        with suppress(RoomExists):  # made meanwhile (another reconcile): it is there, which is what we want
            client.create_room(number, description=room.description, secret=room.secret, pin=room.pin,
                               publishers=room.publishers)
        report.created.append(f"{code}: {room.room} (room {number})")
    for number, found in sorted(actual.items()):
        if number in expected:
            continue
        if number in ours:
            with suppress(RoomMissing):
                client.destroy_room(number, secret=ours[number])
            report.destroyed.append(f"{code}: room {number}")
        else:
            report.unknown.append(f"{code}: room {number} ({found.description[:60]})")
    if expected.keys() != actual.keys():  # its load as it is now, for the metrics and placement
        with transaction(ctx.sessions) as session:
            service.record_bridge_health(session, clock=ctx.clock, code=code, load=client.load())


# --- as durable work ------------------------------------------------------------------------------------------


def reconcile_id(now: float, period: float) -> str:
    return f"vc-reconcile-{int(now // period)}"


def run(ctx: AppContext, workflow_id: str, trigger: str, actor: str) -> dict[str, Any]:
    """The durable step: a Reconcile row from running to its end, with the report."""
    with transaction(ctx.sessions) as session:
        service.begin_reconcile(session, clock=ctx.clock, reconcile_id=workflow_id, trigger=trigger, actor=actor)
    try:
        report = asdict(reconcile(ctx))
    except Exception as exc:
        log.exception("reconcile %s failed", workflow_id)
        report, state = {"errors": [f"{type(exc).__name__}: {exc}"]}, "failed"
    else:
        state = "succeeded"
    with transaction(ctx.sessions) as session:
        service.end_reconcile(session, clock=ctx.clock, reconcile_id=workflow_id, state=state, report=report)
    return report


def start_scheduled(ctx: AppContext) -> str | None:
    """This period's reconcile, handed to the engine once across all engines; None while no bridge is deployed."""
    with transaction(ctx.sessions) as session:
        if not any(b.address for b in service.list_bridges(session)):
            return None
    workflow_id = reconcile_id(time.time(), ctx.settings.rooms_reconcile_seconds)
    ctx.durable("the bridges' reconcile").enqueue(RECONCILE_QUEUE, RECONCILE_WORKFLOW, "schedule", "scheduler",
                                                  workflow_id=workflow_id)
    return workflow_id


def request(ctx: AppContext, *, actor: audit.Actor, reconcile_id: str | None = None, audited: bool = True) -> str:
    """A reconcile asked for (by an operator; by the engine itself, under an id of its own and not audited, when a
    bridge was deployed or changed state): recorded (queued, once per id) and handed to the engine; its id."""
    engine = ctx.durable("a reconcile")
    workflow_id = reconcile_id or f"vc-reconcile-op-{uuid.uuid4().hex[:12]}"
    name = actor.username if isinstance(actor, audit.Principal) else actor
    with transaction(ctx.sessions) as session:
        service.queue_reconcile(session, clock=ctx.clock, actor=actor, reconcile_id=workflow_id, audited=audited)
    engine.enqueue(RECONCILE_QUEUE, RECONCILE_WORKFLOW, "operator", name[:64], workflow_id=workflow_id)
    return workflow_id
