"""What the VC network's API reads and writes. Bridge and bridge-room secrets are never part of any of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from controlplane.inputs import Input


class OutOfService(BaseModel):
    reason: str
    by: str | None
    since: datetime | None


class RoomRead(BaseModel):
    code: str
    name: str
    site: str
    site_name: str
    region: str
    agency: str
    building: str
    floor: int
    capacity: int
    equipment: list[str]
    sip_uri: str
    address: str
    port: int
    protocol: str
    owner: str
    needs_bridge_room: bool
    state: str = Field(description="up, down, unknown (not probed yet) or out_of_service")
    probe_state: str = Field(description="what the probes last said: up, down or unknown")
    state_since: datetime | None
    # Of the probe that set the state: probes that change nothing are not written (the metrics have each cycle).
    last_probe_at: datetime | None = Field(description="when the probe that set the state ran")
    last_rtt_ms: float | None = Field(description="that probe's round trip")
    last_result: str = Field(description="that probe's answer, e.g. '200 in 0.6 ms', 'timeout'")
    out_of_service: OutOfService | None
    retired_at: datetime | None


class RoomEventRead(BaseModel):
    at: datetime
    kind: str = Field(description="state, service, catalogue or bridge_room")
    before: str
    after: str
    detail: str
    actor: str


class RoomChange(BaseModel):
    """A room's state or service change, as the live pages and `rooms/changes/stream` send it."""

    id: int
    at: datetime
    room: str
    site: str
    kind: str
    before: str
    after: str
    state: str = Field(description="the room's state as shown now: up, down, unknown or out_of_service")
    detail: str


class RoomDetail(RoomRead):
    events: list[RoomEventRead]


class SiteRead(BaseModel):
    code: str
    name: str
    kind: str
    region: str
    address: str
    seats: int | None
    opening_hours: str | None
    opening_days: list[str]
    rooms: dict[str, int] = Field(description="its rooms in service, counted by state")


class BridgeRead(BaseModel):
    code: str
    site: str
    server: str
    address: str | None
    state: str
    state_since: datetime | None
    rooms_in_use: int
    rooms_capacity: int
    participants: int
    participants_capacity: int
    last_seen_at: datetime | None
    last_error: str
    admin_secret_set: bool


class SyncResult(BaseModel):
    digest: str
    applied: bool
    sites: int
    rooms: int
    bridges: int
    changes: list[str]
    summary: dict[str, int]


class ServiceIn(Input):
    reason: str = Field(min_length=1, max_length=300, description="why the room is out of service")


class BridgeEndpointIn(Input):
    """Where a catalogue bridge answers, and its admin secret (write-only: never returned)."""

    address: str = Field(min_length=2, max_length=45, description="an IP address inside CP_ROOMS_ALLOWED_NETWORKS")
    http_port: int = Field(default=8088, ge=1, le=65535)
    admin_port: int = Field(default=7088, ge=1, le=65535)
    admin_secret: str = Field(min_length=16, max_length=200, repr=False)


class ReconcileRead(BaseModel):
    id: str
    trigger: str
    actor: str
    state: str = Field(description="queued, running, succeeded or failed")
    requested_at: datetime
    finished_at: datetime | None
    report: dict[str, Any]


class DeployIn(Input):
    count: int = Field(ge=1, le=50, description="how many of the catalogue's bridges not deployed yet to deploy")
    credential: str = Field(min_length=1, max_length=64, description="the SSH credential the servers' key matches")


class DeployAccepted(BaseModel):
    bridges: list[str] = Field(description="the bridges being deployed (follow them at GET /bridges)")
