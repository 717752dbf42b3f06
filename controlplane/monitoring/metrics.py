"""The product's metrics: the app's registry with every domain's metric set made at start (so that /metrics lists
them before their first use). Each set lives in its domain's metrics module; this module only composes them."""

from __future__ import annotations

from controlplane.automation.metrics import JobMetrics
from controlplane.cloud.metrics import CloudCollector
from controlplane.compliance.metrics import ComplianceCollector
from controlplane.metrics import Metrics
from controlplane.rooms.metrics import RoomMetrics
from controlplane.waves.metrics import MigrationMetrics

METRIC_SETS = (ComplianceCollector, CloudCollector, JobMetrics, MigrationMetrics, RoomMetrics)


def product_metrics() -> Metrics:
    metrics = Metrics()
    for kind in METRIC_SETS:
        metrics.of(kind)
    return metrics
