"""Recomputes the cached compliance gauges from the database, off the scrape path."""

from __future__ import annotations

import logging
import threading

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


class PeriodicRefresher:
    """A daemon thread that refreshes the cache every `interval` seconds until stopped."""

    def __init__(self, ctx: AppContext, interval: float) -> None:
        self._ctx, self._interval = ctx, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="metrics-refresh", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while True:
            try:
                refresh_compliance(self._ctx)
            except Exception:  # keep refreshing: a passing database error must not end the gauges
                log.exception("refreshing compliance metrics failed")
            if self._stop.wait(self._interval):
                return
