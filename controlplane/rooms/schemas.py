"""What the VC network's API reads and writes. Bridge and bridge-room secrets are never part of any of them."""

from __future__ import annotations

from datetime import datetime

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
    last_probe_at: datetime | None
    last_rtt_ms: float | None
    last_result: str
    out_of_service: OutOfService | None
    retired_at: datetime | None


class RoomEventRead(BaseModel):
    at: datetime
    kind: str = Field(description="state, service, catalogue or bridge_room")
    before: str
    after: str
    detail: str
    actor: str


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
