"""Request and response bodies of the jobs API. Private keys and secret variables go in and never come out."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from controlplane.automation.domain import PLAYBOOKS, ROLES, JobStatus
from controlplane.inputs import Input

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
USER_PATTERN = r"^[a-z_][a-z0-9_-]{0,31}$"


class CredentialIn(Input):
    """PUT /api/v1/credentials/{name}: the name (lower case: letters, digits, '.', '_', '-') is the path's."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(default="root", pattern=USER_PATTERN, description="the SSH login on the hosts")
    private_key: str = Field(min_length=1, max_length=16384, description="an unencrypted OpenSSH or PEM private "
                                                                         "key; stored sealed, never returned")
    known_hosts: str = Field(default="", max_length=65536,
                             description="the hosts' keys (known_hosts lines); empty: each job trusts a host's key "
                                         "on first contact and then holds it to that key")
    description: str = Field(default="", max_length=200)


class CredentialRead(BaseModel):
    name: str
    username: str
    public_key: str
    fingerprint: str
    known_hosts_entries: int
    description: str
    created_by: str
    created_at: datetime
    updated_at: datetime


class JobHostIn(Input):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=63, description="inventory name, e.g. web-1")
    address: str = Field(max_length=63, description="what SSH connects to: an IPv4 address or a host name")
    groups: list[str] = Field(default=[], description=f"role groups: {', '.join(ROLES[1:])} (every host gets base)")
    vars: dict[str, Any] = Field(default={}, description="host variables (not ansible_* ones)")


class JobIn(Input):
    model_config = ConfigDict(extra="forbid")

    playbook: str = Field(description=f"one of {', '.join(PLAYBOOKS)}")
    credential: str = Field(pattern=NAME_PATTERN, description="the SSH credential to log in with")
    agency: str | None = Field(default=None, description="the agency whose systems these hosts are (scope)")
    hosts: list[JobHostIn] = Field(min_length=1, max_length=200)
    extravars: dict[str, Any] = Field(default={}, description="variables for every host (no secrets: see secrets)")
    secrets: dict[str, str] = Field(default={}, description="secret variables: passed to Ansible in a 0600 file, "
                                                            "stored sealed until the job ends, never returned")
    limit: str | None = Field(default=None, max_length=200, description="Ansible --limit pattern")
    timeout_seconds: int = Field(default=3600, ge=10, le=86400, description="the playbook's time limit")
    verify: bool = Field(default=True, description="run the roles' testinfra checks after a successful run")


class JobAccepted(BaseModel):
    job_id: str
    status: JobStatus
    url: str
    events_url: str
    stream_url: str


class HostStatsRead(BaseModel):
    ok: int
    changed: int
    failed: int
    unreachable: int
    skipped: int


class VerificationRead(BaseModel):
    passed: int
    failed: int
    skipped: int
    error: str | None = None


class JobRead(BaseModel):
    id: str
    playbook: str
    agency: str | None
    credential: str
    status: JobStatus
    explanation: str
    rc: int | None
    hosts: list[JobHostIn]
    extravars: dict[str, Any]
    secret_names: list[str]
    limit: str | None
    timeout_seconds: int | None
    verify: bool
    cancel_requested: bool
    host_stats: dict[str, HostStatsRead]
    verification: VerificationRead | None
    requested_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobEventRead(BaseModel):
    seq: int
    kind: str = Field(description="play, task, ok, failed, unreachable, skipped, stats, check, verify")
    host: str | None
    task: str | None
    status: str
    changed: bool
    duration: float | None
    message: str
    at: datetime


class JobCheckRead(BaseModel):
    host: str
    role: str | None
    check: str
    outcome: str
    duration: float
    message: str
