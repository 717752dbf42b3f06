"""API shapes of waves and migrations: what a wave is made from (systems and their inputs) and what is read back."""

from __future__ import annotations

from datetime import datetime
from ipaddress import IPv4Address
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from controlplane.automation.schemas import NAME_PATTERN
from controlplane.inputs import Input
from controlplane.waves.domain import State

_HOST_NAME = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$"
_UPSTREAM = r"^[A-Za-z0-9.:\[\]-]+:\d{1,5}( (backup|down|weight=\d+))*$"


class _In(Input):
    model_config = ConfigDict(extra="forbid")


class FrontIn(_In):
    name: str = Field(pattern=_HOST_NAME, description="the front's inventory name")
    address: IPv4Address = Field(description="where the control plane reaches it over SSH")
    vars: dict[str, Any] = Field(default={}, description="the front's own nginx variables (site name, port...)")


class ArtifactIn(_In):
    kind: Literal["war", "static"] = "war"
    name: str = Field(pattern=r"^(ROOT|[a-z0-9][a-z0-9_-]{0,62})$",
                      description="the context path (a WAR named ROOT is served at /) or the site's name")
    src: str | None = Field(default=None, description="a file on the control plane's machine")
    url: str | None = Field(default=None, pattern=r"^https?://", description="or a URL the hosts download from")
    checksum: str = Field(pattern=r"^sha256:[0-9a-f]{64}$")
    health_content: str | None = Field(default=None, max_length=200,
                                       description="text the deployed page must contain")


class DataIn(_In):
    format: Literal["sql", "csv"] = "sql"
    dump_src: str | None = Field(default=None, description="a plain pg_dump (--no-owner) on this machine")
    schema_src: str | None = None
    csv_files: list[dict[str, Any]] | None = None
    manifest_src: str | None = Field(default=None, description="the source's row counts and checksums (JSON file)")
    manifest: dict[str, Any] | None = None


class SystemInputsIn(_In):
    """Where one system's legacy side is and what its new side gets."""

    front: FrontIn | None = Field(default=None, description="the users' nginx front that cutover switches")
    legacy_upstreams: list[str] = Field(default=[], max_length=32,
                                        description="the legacy backends rollback points the front back at")
    artifact: ArtifactIn | None = None
    data: DataIn | None = None
    variables: dict[str, Any] = Field(default={}, description="more role variables for every job (no secrets)")


class WaveIn(_In):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$")
    systems: list[str] = Field(min_length=1, max_length=200, description="system codes; dependencies run first")
    credential: str = Field(pattern=NAME_PATTERN, description="the SSH credential the jobs log in with")
    inputs: dict[str, SystemInputsIn] = Field(default={}, description="per system code")
    soak_hours: float | None = Field(default=None, ge=0, le=24 * 90,
                                     description="how long a cut-over system keeps its legacy side before it is "
                                                 "retired; default CP_MIGRATION_SOAK_HOURS (0: retire at once)")


class ApproveIn(_In):
    force_window: str | None = Field(default=None, min_length=3, max_length=300,
                                     description="why the cutover may run outside the system's maintenance window "
                                                 "(audited); without it an approved cutover waits for the window")


class RollbackIn(_In):
    confirm_writes_since_cutover: bool = Field(
        default=False, description="a cut-over system's users may have written to its new database: the rollback "
                                   "dumps it first, but does not load those writes into the legacy side")


class RetryIn(_In):
    from_step: str | None = Field(default=None, description="default: the step that failed")


class StepRunRead(BaseModel):
    step: str
    state: str
    rollback: bool
    started_at: datetime
    finished_at: datetime | None
    duration: float | None
    error: str
    detail: dict[str, Any]


class RollbackRead(BaseModel):
    id: str
    state: str
    steps: list[str]
    steps_done: list[str]
    leftovers: dict[str, Any]
    dumps: list[dict[str, Any]] | None = Field(description="the databases dumped before their servers were "
                                                           "deleted: path, sha256, what was written since cutover")
    error: str
    requested_by: str
    created_at: datetime
    finished_at: datetime | None


class MigrationRead(BaseModel):
    id: str
    wave_id: int
    system: str
    agency: str
    position: int
    state: State
    step: str | None
    steps: list[str]
    steps_done: list[str]
    depends_on: list[str]
    control: str | None
    error: str
    attempt: int
    servers: dict[str, dict[str, Any]]
    approved_by: str | None
    approved_at: datetime | None
    waiting_for: str = Field(description="what a waiting, blocked or cut-over migration waits for, and until when")
    soak_until: datetime | None = Field(description="when a cut-over system is retired (set at its cutover)")
    window_forced: str | None = Field(description="why its cutover may run outside its maintenance window")
    started_at: datetime | None
    finished_at: datetime | None
    step_runs: list[StepRunRead] = []
    rollback: RollbackRead | None = None


class WaveRead(BaseModel):
    id: int
    name: str
    state: str
    cloud: str
    catalogue_version: str
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    soak_hours: float | None
    counts: dict[str, int]
    migrations: list[MigrationRead]
    url: str
    events_url: str
    stream_url: str


class EventRead(BaseModel):
    id: int
    wave_id: int
    migration_id: str | None
    system: str | None
    kind: str
    step: str | None
    state: str | None
    message: str
    at: datetime


class Accepted(BaseModel):
    """A control taken: what it changed, and where to follow it."""

    state: str
    message: str
    url: str
