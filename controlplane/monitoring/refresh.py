"""Recomputes the cached gauges off the scrape path: compliance from the database, cloud figures from the cloud."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from controlplane.cloud.flows import refresh_cloud
from controlplane.compliance.service import current_year_snapshot
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.monitoring.metrics import ComplianceSnapshot

log = logging.getLogger(__name__)


def refresh_compliance(ctx: AppContext) -> None:
    with transaction(ctx.sessions) as session:
        report, target = current_year_snapshot(session, today=ctx.clock.today())
    ctx.metrics.compliance.update(ComplianceSnapshot(
        government_share=report.government.share,
        target=target,
        video_needed=report.government.video_needed,
        ministry_shares={row.key: row.share for row in report.rows if row.share is not None},
        refreshed=True,
    ))


def refresh_cloud_figures(ctx: AppContext) -> None:
    """Hypervisor capacity and agencies' quota use, when a cloud is configured. A cloud that cannot be reached
    is logged (by error class, never with credentials) and exported as controlplane_cloud_up 0; never fatal."""
    refresh_cloud(ctx)


class PeriodicRefresher:
    """A daemon thread that runs `job` now and then every `interval` seconds until stopped."""

    def __init__(self, ctx: AppContext, interval: float, *, job: Callable[[AppContext], object] = refresh_compliance,
                 name: str = "metrics-refresh") -> None:
        self._ctx, self._interval, self._job, self._name = ctx, interval, job, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            try:
                self._job(self._ctx)
            except Exception:  # keep refreshing: a passing error must not end the gauges
                log.exception("%s failed", self._name)
            if self._stop.wait(self._interval):
                return
