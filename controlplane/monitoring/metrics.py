"""Metrics of one app instance. Collectors read cached state; they never query anything in collect()."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.automation.metrics import JobMetrics
from controlplane.cloud.metrics import CloudCollector
from controlplane.migration.metrics import MigrationMetrics


@dataclass(frozen=True)
class ComplianceSnapshot:
    """The current year's shares, as last computed."""

    government_share: float | None = None
    target: float | None = None
    video_needed: int | None = None  # None: unreachable
    ministry_shares: dict[str, float] = field(default_factory=dict)
    refreshed: bool = False


class ComplianceCollector(Collector):
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._snapshot = ComplianceSnapshot()

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


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.http_requests = Counter(
            "controlplane_http_requests_total", "HTTP requests served", ["method", "route", "status"],
            registry=self.registry,
        )
        self.http_duration = Histogram(
            "controlplane_http_request_duration_seconds", "HTTP request duration", ["method", "route"],
            registry=self.registry,
        )
        self.compliance = ComplianceCollector()
        self.registry.register(self.compliance)
        self.cloud = CloudCollector()
        self.registry.register(self.cloud)
        self.jobs = JobMetrics(self.registry)
        self.migrations = MigrationMetrics(self.registry)
