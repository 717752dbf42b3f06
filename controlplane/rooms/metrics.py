"""The VC network's metrics. Rooms by site, agency and state and the bridges' load come from a cache that
`refresh_rooms` fills from the database (periodically, and after each probe cycle), so collect() never queries;
the probes' round trips and results are observed by the process that probes. Labels are bounded: a room is never
a label (per-room detail is the API's); a bridge is, as an instance is."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.rooms import service
from controlplane.rooms.domain import PROBE_RESULTS

RTT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
STATES = ("up", "down", "unknown", "out_of_service")


@dataclass(frozen=True)
class BridgeFigures:
    code: str
    up: bool
    rooms: int
    rooms_capacity: int
    participants: int
    participants_capacity: int


@dataclass(frozen=True)
class RoomsSnapshot:
    rooms: dict[tuple[str, str, str], int] = field(default_factory=dict)  # (site, agency, state) -> rooms
    bridges: tuple[BridgeFigures, ...] = ()
    unplaced: int = 0
    refreshed: bool = False


class RoomMetrics(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._snapshot = RoomsSnapshot()
        self.probe_rtt = Histogram("controlplane_room_probe_rtt_seconds",
                                   "Round trip of the SIP OPTIONS probes of room endpoints that answered",
                                   ["site"], buckets=RTT_BUCKETS, registry=registry)
        self.probes = Counter("controlplane_room_probes_total",
                              "Probes of room endpoints by result: ok, down (no or a non-2xx answer), error (could "
                              "not probe)", ["result"], registry=registry)
        for result in PROBE_RESULTS:
            self.probes.labels(result)
        self.cycle_seconds = Gauge("controlplane_room_probe_cycle_seconds",
                                   "Wall time of the last full probe cycle", registry=registry)
        self.last_cycle = Gauge("controlplane_room_probe_last_cycle_timestamp_seconds",
                                "When the last probe cycle ended (Unix time)", registry=registry)
        registry.register(self)

    def update(self, snapshot: RoomsSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    @property
    def snapshot(self) -> RoomsSnapshot:
        with self._lock:
            return self._snapshot

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snap = self._snapshot
        if not snap.refreshed:
            return
        rooms = GaugeMetricFamily("controlplane_rooms", "Rooms of the catalogue in service by site, agency and state "
                                  "(up, down, unknown, out_of_service)", labels=["site", "agency", "state"])
        for (site, agency, state), count in sorted(snap.rooms.items()):
            rooms.add_metric([site, agency, state], count)
        yield rooms
        families = {
            "up": GaugeMetricFamily("controlplane_bridge_up", "Whether the bridge answers its API", labels=["bridge"]),
            "rooms": GaugeMetricFamily("controlplane_bridge_rooms", "Video rooms on the bridge", labels=["bridge"]),
            "rooms_capacity": GaugeMetricFamily("controlplane_bridge_rooms_capacity",
                                                "Video rooms the bridge may hold", labels=["bridge"]),
            "participants": GaugeMetricFamily("controlplane_bridge_participants", "Participants on the bridge",
                                              labels=["bridge"]),
            "participants_capacity": GaugeMetricFamily("controlplane_bridge_participants_capacity",
                                                       "Participants the bridge may hold", labels=["bridge"]),
        }
        for bridge in snap.bridges:
            families["up"].add_metric([bridge.code], 1 if bridge.up else 0)
            for name in ("rooms", "rooms_capacity", "participants", "participants_capacity"):
                families[name].add_metric([bridge.code], getattr(bridge, name))
        yield from families.values()
        yield GaugeMetricFamily("controlplane_bridge_rooms_unplaced",
                                "Rooms that need a bridge room and have none (no bridge with capacity)",
                                value=snap.unplaced)


def refresh_rooms(ctx: AppContext) -> None:
    """Recount the rooms and bridges into the metrics' cache."""
    with transaction(ctx.sessions) as session:
        counts = {(site, agency, state): n for site, agency, state, n in service.room_counts(session)}
        bridges = tuple(BridgeFigures(b.code, b.state == "up", b.rooms_in_use, b.rooms_capacity, b.participants,
                                      b.participants_capacity) for b in service.list_bridges(session))
        unplaced = service.unplaced_rooms(session)
    ctx.metrics.of(RoomMetrics).update(RoomsSnapshot(rooms=counts, bridges=bridges, unplaced=unplaced,
                                                     refreshed=True))
