"""A daemon thread that runs a job now and then every interval until stopped: the app's lifespan schedules each
domain's refresher (compliance gauges, cloud figures) with it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")


class PeriodicRefresher(Generic[T]):
    """A daemon thread that runs `job` now and then every `interval` seconds until stopped."""

    def __init__(self, ctx: T, interval: float, *, job: Callable[[T], object], name: str) -> None:
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
