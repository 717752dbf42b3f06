"""Cloud capacity and agency quota gauges. collect() reads the cache only; it never calls the cloud.

The cache is filled by the app's periodic refresher (cloud.flows.refresh_cloud) and after every apply. Labels are
bounded: agency code and resource name (instances, cores, ram_mb, volumes), hypervisor name, status.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from controlplane.cloud.domain import Flavor, HypervisorCapacity, ResourceUsage

MIB = 1024 * 1024


@dataclass(frozen=True)
class CloudSnapshot:
    """The cloud figures as last read. `up` is None until the first refresh tried."""

    quotas: Mapping[str, tuple[ResourceUsage, ...]] = field(default_factory=dict)
    quotas_at: Mapping[str, datetime] = field(default_factory=dict)
    hypervisors: tuple[HypervisorCapacity, ...] = ()
    flavors: tuple[Flavor, ...] = ()  # what plans size servers with
    up: bool | None = None
    refreshed_at: datetime | None = None
    error: str | None = None


class CloudCollector(Collector):
    def __init__(self, registry: CollectorRegistry) -> None:
        registry.register(self)
        self._lock = threading.Lock()
        self._snapshot = CloudSnapshot()
        self._operations: dict[tuple[str, str], int] = {}

    @property
    def snapshot(self) -> CloudSnapshot:
        with self._lock:
            return self._snapshot

    def refreshed(self, *, at: datetime, quotas: Mapping[str, Iterable[ResourceUsage]],
                  hypervisors: Iterable[HypervisorCapacity], flavors: Iterable[Flavor] | None = None) -> None:
        """A full refresh that reached the cloud: replaces every figure (the flavors when they were read)."""
        with self._lock:
            self._snapshot = CloudSnapshot(
                quotas={code: tuple(figures) for code, figures in quotas.items()},
                quotas_at={code: at for code in quotas}, hypervisors=tuple(hypervisors),
                flavors=self._snapshot.flavors if flavors is None else tuple(flavors), up=True, refreshed_at=at,
            )

    def unreachable(self, *, at: datetime, reason: str) -> None:
        """A refresh that failed: keep the last figures (stale), say the cloud was not reached."""
        with self._lock:
            self._snapshot = replace(self._snapshot, up=False, refreshed_at=at, error=reason)

    def agency_quota(self, code: str, figures: Iterable[ResourceUsage], *, at: datetime) -> None:
        """One agency's figures, read after an apply or on its page."""
        with self._lock:
            snap = self._snapshot
            self._snapshot = replace(snap, quotas={**snap.quotas, code: tuple(figures)},
                                     quotas_at={**snap.quotas_at, code: at})

    def hypervisors(self, figures: Iterable[HypervisorCapacity]) -> None:
        with self._lock:
            self._snapshot = replace(self._snapshot, hypervisors=tuple(figures))

    def forget(self, codes: Iterable[str]) -> None:
        gone = set(codes)
        with self._lock:
            snap = self._snapshot
            self._snapshot = replace(snap, quotas={k: v for k, v in snap.quotas.items() if k not in gone},
                                     quotas_at={k: v for k, v in snap.quotas_at.items() if k not in gone})

    def operation_finished(self, kind: str, status: str) -> None:
        with self._lock:
            self._operations[(kind, status)] = self._operations.get((kind, status), 0) + 1

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snap, operations = self._snapshot, dict(self._operations)
        finished = CounterMetricFamily("controlplane_cloud_operations",
                                       "Cloud operations finished by this instance, by kind and final status",
                                       labels=["kind", "status"])
        for (kind, status), count in sorted(operations.items()):
            finished.add_metric([kind, status], count)
        yield finished
        if snap.up is None:
            return
        yield GaugeMetricFamily("controlplane_cloud_up", "1 if the last refresh of the cloud figures reached the cloud",
                                value=1 if snap.up else 0)
        if snap.refreshed_at is not None:
            yield GaugeMetricFamily("controlplane_cloud_last_refresh_timestamp_seconds",
                                    "When the cloud figures were last refreshed (Unix time)",
                                    value=snap.refreshed_at.timestamp())
        limit = GaugeMetricFamily("controlplane_cloud_quota_limit",
                                  "Quota limit of an agency's project on the cloud (-1: unlimited)",
                                  labels=["agency", "resource"])
        used = GaugeMetricFamily("controlplane_cloud_quota_used", "Quota in use by an agency's project on the cloud",
                                 labels=["agency", "resource"])
        for code, figures in sorted(snap.quotas.items()):
            for figure in figures:
                limit.add_metric([code, figure.resource], figure.limit)
                used.add_metric([code, figure.resource], figure.in_use)
        yield limit
        yield used
        families = {
            "vcpus": GaugeMetricFamily("controlplane_cloud_hypervisor_vcpus", "vCPUs of a hypervisor",
                                       labels=["hypervisor"]),
            "vcpus_used": GaugeMetricFamily("controlplane_cloud_hypervisor_vcpus_used",
                                            "vCPUs of a hypervisor given to servers", labels=["hypervisor"]),
            "memory": GaugeMetricFamily("controlplane_cloud_hypervisor_memory_bytes", "Memory of a hypervisor",
                                        labels=["hypervisor"]),
            "memory_used": GaugeMetricFamily("controlplane_cloud_hypervisor_memory_used_bytes",
                                             "Memory of a hypervisor given to servers", labels=["hypervisor"]),
            "running": GaugeMetricFamily("controlplane_cloud_hypervisor_running_vms",
                                         "Servers running on a hypervisor", labels=["hypervisor"]),
        }
        for h in sorted(snap.hypervisors, key=lambda h: h.name):
            families["vcpus"].add_metric([h.name], h.vcpus)
            families["vcpus_used"].add_metric([h.name], h.vcpus_used)
            families["memory"].add_metric([h.name], h.memory_mb * MIB)
            families["memory_used"].add_metric([h.name], h.memory_mb_used * MIB)
            families["running"].add_metric([h.name], h.running_vms)
        yield from families.values()
