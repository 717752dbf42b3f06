"""Compliance gauges: this year's video shares, government-wide and per host ministry, and the sessions still needed
by video. collect() reads the cache only; `refresh_compliance` recomputes it from the register (the app's lifespan
runs it periodically, and the register's writes run it at once)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.compliance.service import current_year_snapshot
from controlplane.context import AppContext
from controlplane.db import transaction


@dataclass(frozen=True)
class ComplianceSnapshot:
    """The current year's shares, as last computed."""

    government_share: float | None = None
    target: float | None = None
    video_needed: int | None = None  # None: unreachable
    ministry_shares: dict[str, float] = field(default_factory=dict)
    refreshed: bool = False


class ComplianceCollector(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        self._lock = threading.Lock()
        self._snapshot = ComplianceSnapshot()
        registry.register(self)

    def update(self, snapshot: ComplianceSnapshot) -> None:
        with self._lock:
            self._snapshot = snapshot

    @property
    def snapshot(self) -> ComplianceSnapshot:
        with self._lock:
            return self._snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot
        if not snap.refreshed:
            return
        if snap.government_share is not None:
            yield GaugeMetricFamily(
                "controlplane_remote_meeting_government_share_ratio",
                "Share of designated meeting sessions held by video this year, government-wide",
                value=snap.government_share,
            )
        if snap.target is not None:
            yield GaugeMetricFamily(
                "controlplane_remote_meeting_target_ratio", "Video share target in force today", value=snap.target
            )
        yield GaugeMetricFamily(
            "controlplane_remote_meeting_video_needed",
            "Scheduled sessions this year that must still be held by video to reach the target (-1: unreachable)",
            value=-1 if snap.video_needed is None else snap.video_needed,
        )
        per_ministry = GaugeMetricFamily(
            "controlplane_remote_meeting_share_ratio",
            "Share of designated meeting sessions held by video this year, per host ministry",
            labels=["agency"],
        )
        for agency, share in sorted(snap.ministry_shares.items()):
            per_ministry.add_metric([agency], share)
        yield per_ministry


def refresh_compliance(ctx: AppContext) -> None:
    with transaction(ctx.sessions) as session:
        report, target = current_year_snapshot(session, today=ctx.clock.today())
    ctx.metrics.of(ComplianceCollector).update(ComplianceSnapshot(
        government_share=report.government.share,
        target=target,
        video_needed=report.government.video_needed,
        ministry_shares={row.key: row.share for row in report.rows if row.share is not None},
        refreshed=True,
    ))
