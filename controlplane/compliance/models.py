from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Column, Date, ForeignKey, Index, Integer, String, Table, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.auth.models import Agency
from controlplane.db import Base, UTCDateTime

meeting_participants = Table(
    "meeting_participants",
    Base.metadata,
    Column("meeting_id", ForeignKey("meetings.id", ondelete="CASCADE"), primary_key=True),
    Column("agency_id", ForeignKey("agencies.id"), primary_key=True),
)


class Meeting(Base):
    """A designated inter-agency meeting, effective-dated by designated_from/until."""

    __tablename__ = "meetings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    name_ko: Mapped[str] = mapped_column(String(200))
    name_en: Mapped[str] = mapped_column(String(200))
    host_agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    cadence: Mapped[str] = mapped_column(String(16))
    designated_from: Mapped[date] = mapped_column(Date)
    designated_until: Mapped[date | None] = mapped_column(Date, default=None)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    host: Mapped[Agency] = relationship(lazy="joined")
    participants: Mapped[list[Agency]] = relationship(
        secondary=meeting_participants, lazy="selectin", order_by=Agency.code
    )


class Policy(Base):
    """The rule in force over a date range: how many meetings are designated and the video target."""

    __tablename__ = "compliance_policies"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    effective_from: Mapped[date] = mapped_column(Date, unique=True)
    effective_until: Mapped[date | None] = mapped_column(Date, default=None)
    designated_meetings: Mapped[int] = mapped_column(Integer)
    target_percent: Mapped[int] = mapped_column(Integer)
    hybrid_counts_as_video: Mapped[bool] = mapped_column(Boolean, default=False)
    note: Mapped[str] = mapped_column(String(500), default="")


class MeetingSession(Base):
    """One held (or scheduled) instance of a designated meeting."""

    __tablename__ = "meeting_sessions"
    __table_args__ = (
        UniqueConstraint("meeting_id", "held_on", name="uq_meeting_sessions_meeting_day"),
        Index("ix_meeting_sessions_held_on_status", "held_on", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    meeting_id: Mapped[int] = mapped_column(ForeignKey("meetings.id", ondelete="CASCADE"), index=True)
    held_on: Mapped[date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16))
    mode: Mapped[str] = mapped_column(String(16))
    evidence: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(String(1000), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    meeting: Mapped[Meeting] = relationship(lazy="joined")
