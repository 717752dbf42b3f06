"""What the control plane keeps about playbook jobs: SSH credentials, jobs, their events and their check evidence."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Integer, String, Text, UniqueConstraint, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.auth.models import Agency
from controlplane.db import Base, UTCDateTime


class Credential(Base):
    """An SSH machine credential (AWX's "machine credential"): the private key is stored sealed only."""

    __tablename__ = "automation_credentials"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    username: Mapped[str] = mapped_column(String(64))
    private_key_sealed: Mapped[str] = mapped_column(Text)
    public_key: Mapped[str] = mapped_column(Text)  # derived from the private key; shown, never secret
    # The hosts' keys in known_hosts form; empty: each job trusts a host's key on first contact (per job).
    known_hosts: Mapped[str] = mapped_column(Text, default="")
    description: Mapped[str] = mapped_column(String(200), default="")
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Job(Base):
    """One playbook run on a set of hosts, then (if asked) the testinfra checks of the roles it applied.

    pending -> running -> successful | failed | canceled. The secret variables are sealed while the job waits
    or runs and erased when it ends; only their names stay. `runner` names the process running it (see
    cloud.flows.process_identity), so a process starting later fails the jobs of a dead one as interrupted.
    """

    __tablename__ = "automation_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    playbook: Mapped[str] = mapped_column(String(64))
    agency_id: Mapped[int | None] = mapped_column(ForeignKey("agencies.id"), index=True, default=None)
    credential_id: Mapped[int] = mapped_column(ForeignKey("automation_credentials.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), index=True)
    explanation: Mapped[str] = mapped_column(String(2000), default="")
    rc: Mapped[int | None] = mapped_column(Integer, default=None)
    hosts: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    extravars: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    secret_names: Mapped[list[str]] = mapped_column(JSON, default=list)
    secrets_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    limit: Mapped[str | None] = mapped_column(String(200), default=None)
    timeout_seconds: Mapped[int | None] = mapped_column(Integer, default=None)
    verify: Mapped[bool] = mapped_column(Boolean, default=True)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    host_stats: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    verification: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_by_user_id: Mapped[int | None] = mapped_column(Integer, default=None)
    runner: Mapped[str | None] = mapped_column(String(200), default=None)
    # Handed to the playbook queue; False when its requester runs it itself (a migration step, the CLI's `jobs run`):
    # the engine must never queue such a job a second time (it would race its requester for the hosts).
    queued: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    agency: Mapped[Agency | None] = relationship(lazy="joined")
    credential: Mapped[Credential] = relationship(lazy="joined")


class JobEvent(Base):
    """One runner event (a play, a task, a host's result) or one check result, in the job's order (`seq`)."""

    __tablename__ = "automation_job_events"
    __table_args__ = (UniqueConstraint("job_id", "seq", name="uq_automation_job_events_job_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("automation_jobs.id"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    host: Mapped[str | None] = mapped_column(String(255), default=None)
    task: Mapped[str | None] = mapped_column(String(300), default=None)
    status: Mapped[str] = mapped_column(String(16))
    changed: Mapped[bool] = mapped_column(Boolean, default=False)
    duration: Mapped[float | None] = mapped_column(Float, default=None)
    message: Mapped[str] = mapped_column(String(1000), default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime())


class JobCheck(Base):
    """The evidence: one testinfra check of one role on one host, as it came out after the job."""

    __tablename__ = "automation_job_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("automation_jobs.id"), index=True)
    host: Mapped[str] = mapped_column(String(255))
    role: Mapped[str | None] = mapped_column(String(32), default=None)
    check: Mapped[str] = mapped_column(String(200))
    outcome: Mapped[str] = mapped_column(String(16))
    duration: Mapped[float] = mapped_column(Float)
    message: Mapped[str] = mapped_column(String(1000), default="")
