"""The VC network's tables: sites (smart-work centres among them), rooms and their history, bridges and the bridge
room each room has, and the catalogue's syncs. Nothing of the catalogue is ever deleted: what leaves the files is
retired (`retired_at`), with its history."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, Float, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from controlplane.auth.models import Agency
from controlplane.db import Base, UTCDateTime


class Site(Base):
    """A government complex, a ministry's own building, a local government or a smart-work centre."""

    __tablename__ = "vc_sites"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(32))
    region: Mapped[str] = mapped_column(String(32), index=True)
    address: Mapped[str] = mapped_column(String(300))
    seats: Mapped[int | None] = mapped_column(Integer, default=None)
    opening_hours: Mapped[str | None] = mapped_column(String(16), default=None)
    opening_days: Mapped[list[str]] = mapped_column(JSON, default=list)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class Room(Base):
    """A video-conference room: where it is, whose it is, its SIP endpoint, and its state as the prober last saw
    it (`state` changes only when the probes' answer changes; each change is a RoomEvent)."""

    __tablename__ = "vc_rooms"
    __table_args__ = (Index("ix_vc_rooms_state", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(63), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    site_id: Mapped[int] = mapped_column(ForeignKey("vc_sites.id"), index=True)
    agency_id: Mapped[int] = mapped_column(ForeignKey("agencies.id"), index=True)
    building: Mapped[str] = mapped_column(String(100))
    floor: Mapped[int] = mapped_column(Integer)
    capacity: Mapped[int] = mapped_column(Integer)
    equipment: Mapped[list[str]] = mapped_column(JSON, default=list)
    sip_uri: Mapped[str] = mapped_column(String(260), unique=True)
    address: Mapped[str] = mapped_column(String(45))
    port: Mapped[int] = mapped_column(Integer)
    protocol: Mapped[str] = mapped_column(String(8))
    owner: Mapped[str] = mapped_column(String(200), default="")
    needs_bridge_room: Mapped[bool] = mapped_column(Boolean, default=True)
    state: Mapped[str] = mapped_column(String(16), default="unknown")  # unknown, up, down
    state_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_probe_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_rtt: Mapped[float | None] = mapped_column(Float, default=None)
    last_result: Mapped[str] = mapped_column(String(200), default="")
    out_of_service: Mapped[str | None] = mapped_column(String(300), default=None)  # the reason, while it is
    out_of_service_by: Mapped[str | None] = mapped_column(String(64), default=None)
    out_of_service_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    site: Mapped[Site] = relationship(lazy="joined")
    agency: Mapped[Agency] = relationship(lazy="joined")


class RoomEvent(Base):
    """A change in a room's life: its probed state, service, catalogue entry or bridge room."""

    __tablename__ = "vc_room_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("vc_rooms.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    kind: Mapped[str] = mapped_column(String(32))  # state, service, catalogue, bridge_room
    before: Mapped[str] = mapped_column(String(32), default="")
    after: Mapped[str] = mapped_column(String(32), default="")
    detail: Mapped[str] = mapped_column(String(500), default="")
    actor: Mapped[str] = mapped_column(String(64), default="")


class Bridge(Base):
    """A video bridge (Janus) on a cloud server of the VC operations agency; its admin secret is stored sealed."""

    __tablename__ = "vc_bridges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    code: Mapped[str] = mapped_column(String(63), unique=True)
    site_id: Mapped[int] = mapped_column(ForeignKey("vc_sites.id"))
    server: Mapped[str] = mapped_column(String(63))
    rooms_capacity: Mapped[int] = mapped_column(Integer)
    participants_capacity: Mapped[int] = mapped_column(Integer)
    address: Mapped[str | None] = mapped_column(String(45), default=None)  # known once deployed or registered
    http_port: Mapped[int] = mapped_column(Integer, default=8088)
    admin_port: Mapped[int] = mapped_column(Integer, default=7088)
    admin_secret_sealed: Mapped[str | None] = mapped_column(Text, default=None)
    state: Mapped[str] = mapped_column(String(16), default="unknown")  # unknown, up, down
    state_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    rooms_in_use: Mapped[int] = mapped_column(Integer, default=0)
    participants: Mapped[int] = mapped_column(Integer, default=0)
    last_seen_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    last_error: Mapped[str] = mapped_column(String(300), default="")
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    site: Mapped[Site] = relationship(lazy="joined")


class BridgeRoom(Base):
    """The persistent video room a catalogue room has on a bridge; its secret and PIN are stored sealed."""

    __tablename__ = "vc_bridge_rooms"
    __table_args__ = (UniqueConstraint("bridge_id", "number", name="uq_vc_bridge_rooms_bridge_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    room_id: Mapped[int] = mapped_column(ForeignKey("vc_rooms.id"), unique=True)
    bridge_id: Mapped[int] = mapped_column(ForeignKey("vc_bridges.id"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    secret_sealed: Mapped[str] = mapped_column(Text)
    pin_sealed: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())

    bridge: Mapped[Bridge] = relationship(lazy="joined")


class Reconcile(Base):
    """One reconcile of the bridges and their rooms (on schedule or asked for by an operator): what it found and
    did. Its id is its workflow's."""

    __tablename__ = "vc_reconciles"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule, operator
    actor: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="queued")  # queued, running, succeeded, failed
    requested_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), default=None)
    report: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CatalogueSync(Base):
    """One applied sync of the catalogue: by whom, the files' digest, and what it changed."""

    __tablename__ = "vc_catalogue_syncs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    actor: Mapped[str] = mapped_column(String(64))
    digest: Mapped[str] = mapped_column(String(64))
    changes: Mapped[list[Any]] = mapped_column(JSON, default=list)
