"""Playbook job metrics, updated as jobs start and end (never computed in a scrape). Labels are bounded: the
playbook (a fixed list), the job status and, for checks, the role and outcome."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from controlplane.automation.domain import CheckResult


class JobMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.finished = Counter("controlplane_automation_jobs_total", "Playbook jobs that ended, by outcome",
                                ["playbook", "status"], registry=registry)
        self.duration = Histogram("controlplane_automation_job_duration_seconds",
                                  "Time from a job's start to its end (playbook and checks)", ["playbook"],
                                  buckets=(5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200), registry=registry)
        self.running = Gauge("controlplane_automation_jobs_running", "Playbook jobs running in this process",
                             registry=registry)
        self.checks = Counter("controlplane_automation_checks_total", "testinfra checks run after jobs, by outcome",
                              ["role", "outcome"], registry=registry)

    def job_finished(self, playbook: str, status: str, seconds: float | None) -> None:
        self.finished.labels(playbook, status).inc()
        if seconds is not None:
            self.duration.labels(playbook).observe(seconds)

    def checked(self, results: list[CheckResult]) -> None:
        for result in results:
            self.checks.labels(result.role or "none", result.outcome).inc()
