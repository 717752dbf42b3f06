"""Migration metrics: waves and migrations by state (counted from the database after every change of state, never
in a scrape), step durations, and the workflows in flight per queue. Labels are bounded: state, step, outcome,
queue (agency or cloud) and agency."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Gauge, Histogram
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from controlplane.waves.domain import State
from controlplane.waves.models import Migration, Wave


class MigrationMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.by_state = Gauge("controlplane_migrations", "Migrations of agency systems, by state", ["state"],
                              registry=registry)
        self.waves_by_state = Gauge("controlplane_waves", "Migration waves, by state (their migrations' sum)",
                                    ["state"], registry=registry)
        self.step_duration = Histogram(
            "controlplane_migration_step_duration_seconds", "Time a migration step took, by outcome",
            ["step", "outcome"], buckets=(1, 5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600), registry=registry)
        self.in_flight = Gauge("controlplane_migration_workflows_in_flight",
                               "Migration workflows running in this process, by queue", ["queue", "agency"],
                               registry=registry)
        for state in State:
            self.by_state.labels(state.value).set(0)
            self.waves_by_state.labels(state.value).set(0)

    def step_finished(self, step: str, outcome: str, seconds: float) -> None:
        self.step_duration.labels(step, outcome).observe(seconds)

    def count(self, session: Session) -> None:
        for gauge, row in ((self.by_state, Migration), (self.waves_by_state, Wave)):
            counts = dict(session.execute(select(row.state, func.count()).group_by(row.state)).all())
            for state in State:
                gauge.labels(state.value).set(counts.get(state.value, 0))
