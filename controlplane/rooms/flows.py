"""The VC network's long work: a probe cycle asks every room endpoint (SIP OPTIONS) and every deployed bridge (its
API), writes the state changes and refreshes the metrics' cache; a bridge that changed state has the bridges
reconciled at once (a bridge down is drained then, not at the next scheduled reconcile). One cycle per probe
period across all engine processes: each engine's ticker hands the period's cycle to the engine under an id made of
the period (`probe_cycle_id`), and the same id twice is one workflow."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.rooms import service
from controlplane.rooms.domain import probe_outcome, probe_window
from controlplane.rooms.metrics import RoomMetrics, refresh_rooms
from controlplane.rooms.reconcile import check_bridges
from controlplane.rooms.sip_probe import ProbeTarget, probe_all, target_allowed

log = logging.getLogger(__name__)
PROBE_QUEUE = "cp-vc-probes"
PROBE_WORKFLOW = "cp.vc_probe_cycle"


@dataclass(frozen=True)
class CycleSummary:
    rooms: int
    results: dict[str, int]
    changes: list[tuple[str, str, str]]
    seconds: float
    bridge_changes: list[tuple[str, str, str]] = field(default_factory=list)


def probe_cycle_id(now: float, period: float) -> str:
    return f"vc-probe-{int(now // period)}"


def run_probe_cycle(ctx: AppContext) -> CycleSummary:
    """Probe every room once, spread over the cycle's window, and ask every deployed bridge how it is; write what
    changed; count the results."""
    settings = ctx.settings
    started = time.monotonic()
    with transaction(ctx.sessions) as session:
        rows = service.probe_targets(session)
        sites = service.room_sites(session)
    networks = settings.rooms_networks
    targets = [ProbeTarget(code, address, port, uri) for code, address, port, uri in rows
               if target_allowed(address, networks)]
    refused = {code for code, address, _port, _uri in rows if not target_allowed(address, networks)}
    results = asyncio.run(probe_all(targets, timeout=settings.rooms_probe_timeout,
                                    cycle=probe_window(settings.rooms_probe_seconds, settings.rooms_probe_timeout)))
    outcomes = {r.key: probe_outcome(r.ok, r.status, r.rtt, r.error) for r in results}
    outcomes.update({code: probe_outcome(False, None, None, "outside the allowed networks") for code in refused})
    with transaction(ctx.sessions) as session:
        changes = service.record_probes(session, clock=ctx.clock, outcomes=outcomes)
    metrics = ctx.metrics.of(RoomMetrics)
    counts: dict[str, int] = {}
    for code, outcome in outcomes.items():
        counts[outcome.result] = counts.get(outcome.result, 0) + 1
        metrics.probes.labels(outcome.result).inc()
        if outcome.result == "ok" and outcome.rtt is not None:
            metrics.probe_rtt.labels(sites.get(code, "")).observe(outcome.rtt)
    bridge_changes = check_bridges(ctx)
    seconds = time.monotonic() - started
    metrics.cycle_seconds.set(seconds)
    metrics.last_cycle.set(time.time())
    refresh_rooms(ctx)
    for code, before, after in changes:
        log.info("room %s: %s -> %s", code, before, after)
    return CycleSummary(rooms=len(rows), results=counts, changes=changes, seconds=seconds,
                        bridge_changes=bridge_changes)


def start_probe_cycle(ctx: AppContext) -> str | None:
    """Hand this period's probe cycle to the engine (once per period across all engines); None when the catalogue
    has neither a room nor a deployed bridge to ask."""
    with transaction(ctx.sessions) as session:
        if not service.probe_targets(session) and not any(b.address for b in service.list_bridges(session)):
            return None
    workflow_id = probe_cycle_id(time.time(), ctx.settings.rooms_probe_seconds)
    ctx.durable("the room probes").enqueue(PROBE_QUEUE, PROBE_WORKFLOW, workflow_id=workflow_id)
    return workflow_id
