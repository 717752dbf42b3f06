"""What the control plane keeps about migrations: waves of inventory systems, each system's migration with its step
runs and events, and rollbacks (an object of their own, with their own steps)."""
from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.auth.models import Agency
from controlplane.db import Base, UTCDateTime
from controlplane.inventory.models import AgencySystem


class Wave(Base):
    """Systems migrated together: their plans as they were when the wave was made, and how it runs.

    draft -> running -> succeeded | failed | canceled (a wave's state sums up its migrations').
    """

    __tablename__ = "migration_waves"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    state: Mapped[str] = mapped_column(String(20), index=True)
    catalogue_version: Mapped[str] = mapped_column(String(32))
    cloud: Mapped[str] = mapped_column(String(64))
    credential_id: Mapped[int | None] = mapped_column(ForeignKey("automation_credentials.id"), default=None)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    soak_hours: Mapped[float | None] = mapped_column(Float, default=None)  # None: the setting's default

    migrations: Mapped[list[Migration]] = relationship(back_populates="wave", order_by="Migration.position")


class Migration(Base):
    """One system's migration in a wave, run as a durable workflow (`workflow_id`) step by step.

    pending -> queued -> running -> awaiting_approval (before cutover) -> queued -> running -> cut_over (soak)
    -> queued -> running -> succeeded; running -> failed | paused | canceled; an approved cutover may wait outside
    the queue: waiting (dependencies, window) or blocked (a dependency stopped). A rollback takes it to
    rolling_back -> rolled_back. `steps_done` is the prefix of `plan["steps"]` that has finished; a retry starts at
    the first step not in it.
    """

    __tablename__ = "migrations"
    __table_args__ = (UniqueConstraint("wave_id", "system_id", name="uq_migrations_wave_system"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    wave_id: Mapped[int] = mapped_column(ForeignKey("migration_waves.id"), index=True)
    system_id: Mapped[int] = mapped_column(ForeignKey("migration_systems.id"), index=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # the order inside the wave: dependencies first
    state: Mapped[str] = mapped_column(String(20), index=True)
    step: Mapped[str | None] = mapped_column(String(16), default=None)  # the step running, failed or waiting
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)  # domain.SystemPlan.to_dict()
    # Where the legacy side is: {"front": host, "legacy_upstreams": [...], "data": {...}} (see schemas.Legacy)
    legacy: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    depends_on: Mapped[list[str]] = mapped_column(JSON, default=list)  # migrations of this wave to cut over first
    steps_done: Mapped[list[str]] = mapped_column(JSON, default=list)
    resources: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # servers made: {name: {id, address}}
    error: Mapped[str] = mapped_column(String(2000), default="")
    # An operator's pause or cancel, taken up by the workflow between steps (cancel also stops a running job).
    control: Mapped[str | None] = mapped_column(String(16), default=None)
    # The generated database owner's password (sealed): the same in every job of the migration, never shown.
    secrets_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    workflow_id: Mapped[str | None] = mapped_column(String(80), default=None)
    attempt: Mapped[int] = mapped_column(Integer, default=0)  # workflows started for it (run, retries)
    approved_by: Mapped[str | None] = mapped_column(String(64), default=None)
    approved_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    waiting_for: Mapped[str] = mapped_column(String(300), default="")  # what a held migration waits for
    soak_until: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)  # set at cutover
    window_forced: Mapped[str | None] = mapped_column(String(300), default=None)  # why it may cut over out of window
    # A step the cloud did not answer waits outside the queue until then (backoff over `cloud_waits` in a row).
    cloud_retry_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    cloud_waits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)

    wave: Mapped[Wave] = relationship(back_populates="migrations")
    system: Mapped[AgencySystem] = relationship(lazy="joined")
    agency: Mapped[Agency] = relationship(lazy="joined")


class Rollback(Base):
    """Undoing a migration: its own steps (domain.rollback_steps), run as a workflow, and what it found left.

    running -> succeeded | failed. `leftovers` is what the cloud still held of the migration afterwards (empty
    when it succeeded: that is the proof)."""

    __tablename__ = "migration_rollbacks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    migration_id: Mapped[str] = mapped_column(ForeignKey("migrations.id"), index=True)
    state: Mapped[str] = mapped_column(String(20))
    steps: Mapped[list[str]] = mapped_column(JSON)
    steps_done: Mapped[list[str]] = mapped_column(JSON, default=list)
    leftovers: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # The databases dumped before their servers went (a rollback after cutover): [{database, path, sha256, bytes,
    # written_since_cutover}]; the files are under the artifacts directory, loadable by the data_migration role.
    dumps: Mapped[list[dict[str, Any]] | None] = mapped_column(JSON, default=list)
    error: Mapped[str] = mapped_column(String(2000), default="")
    workflow_id: Mapped[str] = mapped_column(String(80))
    requested_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)


class StepRun(Base):
    """One attempt of one step of a migration (or of its rollback, then `rollback_id` is set)."""

    __tablename__ = "migration_step_runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    migration_id: Mapped[str] = mapped_column(ForeignKey("migrations.id"), index=True)
    rollback_id: Mapped[str | None] = mapped_column(ForeignKey("migration_rollbacks.id"), default=None)
    step: Mapped[str] = mapped_column(String(24))
    # running | succeeded | failed | canceled | interrupted | cloud_unreachable (it runs again once the cloud answers)
    state: Mapped[str] = mapped_column(String(20))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)  # job ids, server ids, evidence summary
    error: Mapped[str] = mapped_column(String(2000), default="")
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    duration: Mapped[float | None] = mapped_column(Float, default=None)


class MigrationEvent(Base):
    """What happened, in order (`id`): state changes, step starts and ends, approvals; streamed as SSE."""

    __tablename__ = "migration_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    wave_id: Mapped[int] = mapped_column(ForeignKey("migration_waves.id"), index=True)
    migration_id: Mapped[str | None] = mapped_column(ForeignKey("migrations.id"), index=True, default=None)
    system: Mapped[str | None] = mapped_column(String(40), default=None)
    kind: Mapped[str] = mapped_column(String(24))  # state | step | approval | control
    step: Mapped[str | None] = mapped_column(String(24), default=None)
    state: Mapped[str | None] = mapped_column(String(20), default=None)
    message: Mapped[str] = mapped_column(Text, default="")
    at: Mapped[datetime] = mapped_column(UTCDateTime())
