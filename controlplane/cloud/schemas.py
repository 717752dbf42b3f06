"""Request and response bodies of the cloud API. Secrets have no field here: nothing can return them."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controlplane.inputs import Input


class TenancyStatus(StrEnum):
    NOT_APPLIED = "not_applied"  # a spec, never applied
    QUEUED = "queued"
    RUNNING = "running"
    APPLIED = "applied"  # the last apply succeeded and the spec has not changed since
    PENDING_CHANGES = "pending_changes"  # the spec changed after the last successful apply
    FAILED = "failed"  # the last apply failed


class OperationStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class InventoryFormat(StrEnum):
    JSON = "json"
    YAML = "yaml"
    INI = "ini"


# --- the desired spec ----------------------------------------------------------------------------

MAX_QUOTA = 2**31 - 1


class QuotasSpec(Input):
    model_config = ConfigDict(extra="forbid")

    # Stored in INTEGER columns.
    instances: int = Field(default=10, ge=0, le=MAX_QUOTA, description="servers")
    cores: int = Field(default=20, ge=0, le=MAX_QUOTA, description="vCPUs")
    ram_mb: int = Field(default=40960, ge=0, le=MAX_QUOTA, description="memory in MiB")
    volumes: int = Field(default=10, ge=0, le=MAX_QUOTA,
                         description="block-storage volumes (skipped by clouds without Cinder)")


class IngressRuleSpec(Input):
    model_config = ConfigDict(extra="forbid")

    protocol: str = Field(max_length=8, description="tcp, udp or icmp")
    port_min: int | None = Field(default=None, ge=1, le=65535, description="none for icmp")
    port_max: int | None = Field(default=None, ge=1, le=65535, description="at least port_min; none for icmp")
    remote_cidr: str = Field(max_length=43, description="IPv4 network allowed in, e.g. 10.0.0.0/8")


class OnboardingSpecIn(Input):
    """What an agency should have on the cloud. The rules (private CIDR /16../28, ports, key) are checked by
    the domain; a refusal names the field."""

    model_config = ConfigDict(extra="forbid")

    quotas: QuotasSpec = Field(default_factory=QuotasSpec)
    cidr: str | None = Field(default=None, max_length=43,
                             description="the agency network's IPv4 CIDR; none keeps the current one or picks "
                                         "a free 10.81.N.0/24")
    ingress: list[IngressRuleSpec] = Field(default_factory=list, max_length=50)
    public_key: str | None = Field(default=None, max_length=16384, description="one OpenSSH public key line")


class ResourceNames(BaseModel):
    project: str
    network: str
    subnet: str
    router: str
    security_group: str
    keypair: str
    user: str


class OnboardingSpecRead(BaseModel):
    agency: str
    cloud: str
    quotas: QuotasSpec
    cidr: str
    ingress: list[IngressRuleSpec]
    public_key: str | None
    names: ResourceNames
    updated_at: datetime


# --- plans and operations ------------------------------------------------------------------------

class FieldChangeRead(BaseModel):
    field: str
    old: Any = None
    new: Any = None


class ChangeRead(BaseModel):
    action: str
    resource: str
    name: str
    fields: list[FieldChangeRead] = Field(default_factory=list)


class PlanRead(BaseModel):
    agency: str
    cloud: str
    summary: str
    is_noop: bool
    changes: list[ChangeRead]
    skipped: list[str] = Field(default=[], description="what the spec asks for but this cloud cannot do, and why")
    planned_at: datetime | None = None


class OperationError(BaseModel):
    code: str
    message: str


class OperationRead(BaseModel):
    id: str
    kind: str
    agency: str
    cloud: str
    status: OperationStatus
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None = Field(
        default=None, description="when succeeded: the plan applied (summary, changes), project_id, network_id, "
                                  "service_user and whether its password was (re)set; never the password")
    error: OperationError | None = None


class OperationAccepted(BaseModel):
    operation_id: str
    status: OperationStatus
    url: str


# --- status --------------------------------------------------------------------------------------

class QuotaUseRead(BaseModel):
    resource: str
    limit: int = Field(description="-1: unlimited")
    in_use: int
    ratio: float | None = Field(description="in_use / limit; none when unlimited")


class ServerRead(BaseModel):
    id: str
    name: str
    status: str
    owner: str | None
    addresses: list[str]
    flavor: str


class NetworkRead(BaseModel):
    name: str
    network_id: str | None
    subnet: str
    subnet_id: str | None = None
    cidr: str | None
    router: str
    router_id: str | None


class PlanSummary(BaseModel):
    summary: str
    is_noop: bool
    planned_at: datetime | None


class TenancyRead(BaseModel):
    agency: str
    name_ko: str
    name_en: str
    cloud: str
    status: TenancyStatus
    project: str
    project_id: str | None
    network_id: str | None
    service_user: str | None
    cidr: str
    last_applied_at: datetime | None
    last_plan: PlanSummary | None
    last_operation_id: str | None
    quota: list[QuotaUseRead] = Field(description="as of quota_as_of (cached; the agency's own page reads live)")
    quota_as_of: datetime | None


class AgencyCloudRead(TenancyRead):
    spec: OnboardingSpecRead
    servers: list[ServerRead]
    networks: list[NetworkRead]
    plan: PlanRead | None = Field(default=None, description="the last plan made (by a plan or an apply)")
    last_operation: OperationRead | None = None


class HypervisorRead(BaseModel):
    name: str
    vcpus: int
    vcpus_used: int
    memory_mb: int
    memory_mb_used: int
    running_vms: int


class CapacityTotals(BaseModel):
    vcpus: int
    vcpus_used: int
    memory_mb: int
    memory_mb_used: int
    running_vms: int


class AgencyQuotaRead(BaseModel):
    agency: str
    project_id: str
    quota: list[QuotaUseRead]


class CapacityRead(BaseModel):
    cloud: str
    read_at: datetime
    hypervisors: list[HypervisorRead]
    totals: CapacityTotals
    agencies: list[AgencyQuotaRead]
