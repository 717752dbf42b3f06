"""The metrics registry of one app instance: the app's own HTTP metrics and each domain's metric set.

A domain owns its metric set (a class built from the registry, e.g. controlplane.cloud.metrics.CloudCollector)
and reaches it through `ctx.metrics.of(TheSet)`; the set is made and registered once, on first use, so this
module knows no domain. monitoring.metrics builds every set at start so that /metrics lists them all at once.
"""

from __future__ import annotations

import threading
from typing import Protocol, TypeVar

from prometheus_client import CollectorRegistry, Counter, Histogram


class MetricSet(Protocol):
    def __init__(self, registry: CollectorRegistry) -> None: ...


SetT = TypeVar("SetT", bound=MetricSet)


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
        self._sets: dict[type, object] = {}
        self._lock = threading.Lock()

    def of(self, kind: type[SetT]) -> SetT:
        """The instance's metric set of this kind (made and registered on first use)."""
        with self._lock:
            made = self._sets.get(kind)
            if made is None:
                made = self._sets[kind] = kind(self.registry)
        assert isinstance(made, kind)
        return made
