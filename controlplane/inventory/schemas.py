"""Response bodies of the inventory, catalogue, adoption and plan routes, and the plan request."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from controlplane.inputs import Input
from controlplane.inventory.domain import ComponentKind, Criticality, Grade, SystemStatus


class ImportMode(StrEnum):
    MERGE = "merge"  # create and update the file's systems, keep the others
    REPLACE = "replace"  # the file is the whole inventory: systems absent from it are deleted


class ExportFormat(StrEnum):
    CSV = "csv"
    YAML = "yaml"


class FindingRead(BaseModel):
    """A problem of an inventory, a system or a plan (domain.Finding)."""

    code: str
    message: str
    field: str
    system: str | None
    row: int | None
    agency: str | None
    wave: int | None


class ComponentRead(BaseModel):
    kind: ComponentKind
    vendor: str
    product: str
    version: str


class ComponentMatchRead(ComponentRead):
    """A component of a system and its catalogue entry; `entry` None: unknown, flagged (`flag` says how)."""

    index: int
    entry: str | None
    target: str | None = Field(description="the open-source target, e.g. 'PostgreSQL 15'")
    role: str | None
    grade: Grade | None
    open_source: bool = Field(description="the component itself is open source already")
    flag: str | None = Field(description="unknown_component or unknown_version: the plan refuses the system")
    message: str | None


class SystemRead(BaseModel):
    code: str
    agency: str
    name_ko: str
    name_en: str
    criticality: Criticality
    maintenance_window: str | None
    vcpus: int
    ram_mb: int
    disk_gb: int
    data_gb: int
    components: list[ComponentRead]
    depends_on: list[str]
    status: SystemStatus
    notes: str
    unknown_components: int = Field(description="components without a catalogue entry (flagged)")
    created_at: datetime
    updated_at: datetime


class SystemDetail(SystemRead):
    matches: list[ComponentMatchRead]


class ImportCounts(BaseModel):
    created: int
    updated: int
    unchanged: int
    deleted: int


class ImportReport(BaseModel):
    """What an import changed (or, with dry_run, would change); `findings` flags unknown components."""

    source: str
    mode: ImportMode
    dry_run: bool
    catalogue_version: str
    systems: int = Field(description="systems in the file")
    counts: ImportCounts
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    deleted: list[str]
    findings: list[FindingRead]


class VersionsRead(BaseModel):
    min: str | None
    max: str | None


class DataMoveRead(BaseModel):
    format: str
    tool: str


class CatalogueEntryRead(BaseModel):
    id: str
    kind: ComponentKind
    vendors: list[str]
    products: list[str]
    versions: VersionsRead
    open_source: bool
    target: ComponentRead
    role: str
    check: str
    grade: Grade
    data_move: DataMoveRead | None
    notes: str


class CatalogueRead(BaseModel):
    version: str
    entries: list[CatalogueEntryRead]


class AdoptionRow(BaseModel):
    """Open-source components of an agency (or `ALL`) now and after its legacy systems migrate."""

    agency: str
    name_ko: str
    name_en: str
    components: int
    open_now: int
    open_after: int
    unknown: int
    share_now: float
    share_after: float


class AdoptionRead(BaseModel):
    catalogue_version: str
    agencies: list[AdoptionRow]
    total: AdoptionRow


class PlanRequest(Input):
    """Which systems to plan: `systems` (waves by dependency), `waves` (a grouping to check), or neither (every
    legacy system)."""

    model_config = ConfigDict(extra="forbid")

    systems: list[str] | None = Field(default=None, min_length=1, description="system codes")
    waves: list[Annotated[list[str], Field(min_length=1)]] | None = Field(
        default=None, min_length=1, description="system codes per wave, wave 1 first")


class PlanRead(BaseModel):
    """domain.MigrationPlan.to_dict() and its text (like `terraform plan`); only an `ok` plan may be applied."""

    catalogue_version: str
    ok: bool
    summary: str
    counts: dict[str, int]
    waves: list[dict[str, Any]]
    findings: list[FindingRead]
    warnings: list[FindingRead] = Field(description="traffic between the tiers the agencies' declared ingress "
                                                    "would drop (ingress_not_declared); the plan can still be applied")
    text: str
