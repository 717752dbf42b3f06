"""What the control plane keeps about agencies on the cloud: the desired tenancy and the operations on it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.auth.models import Agency
from controlplane.db import Base, UTCDateTime


class CloudTenancy(Base):
    """One agency on one named cloud: the desired onboarding spec and what the last apply made.

    The service user's password is stored only sealed (controlplane.secrets) and is never read back by the API.
    `last_operation_id` names the latest apply; a new one is accepted only when that one has finished, with a
    compare-and-set on the column, so two applies of the same tenancy never run at once, on any backend.
    `updated_at` is when the desired spec last changed (an apply sets `last_applied_at` only).
    """

    __tablename__ = "cloud_tenancies"
    __table_args__ = (
        UniqueConstraint("agency_id", "cloud", name="uq_cloud_tenancies_agency_cloud"),
        UniqueConstraint("cloud", "cidr", name="uq_cloud_tenancies_cloud_cidr"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    cloud: Mapped[str] = mapped_column(String(64))
    # desired spec
    quota_instances: Mapped[int] = mapped_column(Integer)
    quota_cores: Mapped[int] = mapped_column(Integer)
    quota_ram_mb: Mapped[int] = mapped_column(Integer)
    quota_volumes: Mapped[int] = mapped_column(Integer)
    cidr: Mapped[str] = mapped_column(String(43))
    ingress: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    public_key: Mapped[str | None] = mapped_column(Text, default=None)
    # what exists (as of the last apply)
    project_id: Mapped[str | None] = mapped_column(String(64), default=None)
    network_id: Mapped[str | None] = mapped_column(String(64), default=None)
    service_user: Mapped[str | None] = mapped_column(String(64), default=None)
    service_password_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    last_plan: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    last_planned_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_operation_id: Mapped[str | None] = mapped_column(ForeignKey("cloud_operations.id"), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    agency: Mapped[Agency] = relationship(lazy="joined")
    last_operation: Mapped[CloudOperation | None] = relationship(lazy="joined")


class CloudOperation(Base):
    """A piece of long cloud work (an onboarding apply), run in the background: queued -> running -> done.

    `runner` names the process that runs it (host, pid and the process's start time), so that a process
    starting later can tell an operation whose runner died (failed, "interrupted") from one still running.
    """

    __tablename__ = "cloud_operations"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    cloud: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    requested_by: Mapped[str] = mapped_column(String(64))
    requested_by_user_id: Mapped[int | None] = mapped_column(Integer, default=None)
    runner: Mapped[str | None] = mapped_column(String(200), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON, default=None)
    error_code: Mapped[str | None] = mapped_column(String(64), default=None)
    error: Mapped[str | None] = mapped_column(String(2000), default=None)

    agency: Mapped[Agency] = relationship(lazy="joined")
