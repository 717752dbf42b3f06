"""Roles, permissions and agency scope: pure rules, no I/O."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"
    SECRETARIAT = "secretariat"
    MINISTRY = "ministry"
    AUDITOR = "auditor"


class Permission(StrEnum):
    AGENCIES_READ = "agencies:read"
    AGENCIES_WRITE = "agencies:write"
    USERS_READ = "users:read"
    USERS_WRITE = "users:write"
    AUDIT_READ = "audit:read"
    COMPLIANCE_READ = "compliance:read"
    MEETINGS_WRITE = "meetings:write"
    POLICIES_WRITE = "policies:write"
    SESSIONS_WRITE = "sessions:write"
    CLOUD_READ = "cloud:read"
    CLOUD_WRITE = "cloud:write"
    JOBS_READ = "jobs:read"
    JOBS_RUN = "jobs:run"
    CREDENTIALS_READ = "credentials:read"
    CREDENTIALS_WRITE = "credentials:write"
    MIGRATION_READ = "migration:read"
    MIGRATION_WRITE = "migration:write"
    MIGRATION_APPROVE = "migration:approve"
    ROOMS_READ = "rooms:read"
    ROOMS_WRITE = "rooms:write"


# Everyone reads the VC network (secretariats book its rooms, ministries meet in them); operators run it.
_READ_ALL = {Permission.AGENCIES_READ, Permission.COMPLIANCE_READ, Permission.ROOMS_READ}

# Cloud, jobs and migrations: operators onboard agencies, keep the SSH credentials, run playbooks, keep the
# system inventory, run waves and approve cutovers; auditors read everything; a ministry reads its own agency's
# tenancy, jobs, systems and migrations only (its reach is checked per agency by the services), never the control
# plane's SSH credentials (whose names, fingerprints and creators map the fleet); secretariats have nothing to do
# with any of them.
ROLE_PERMISSIONS: dict[Role, frozenset[Permission]] = {
    Role.ADMIN: frozenset(Permission),
    Role.OPERATOR: frozenset(_READ_ALL | {Permission.CLOUD_READ, Permission.CLOUD_WRITE, Permission.JOBS_READ,
                                          Permission.JOBS_RUN, Permission.CREDENTIALS_READ,
                                          Permission.CREDENTIALS_WRITE,
                                          Permission.MIGRATION_READ, Permission.MIGRATION_WRITE,
                                          Permission.MIGRATION_APPROVE, Permission.ROOMS_WRITE}),
    Role.SECRETARIAT: frozenset(_READ_ALL | {Permission.SESSIONS_WRITE}),
    Role.MINISTRY: frozenset(_READ_ALL | {Permission.SESSIONS_WRITE, Permission.CLOUD_READ, Permission.JOBS_READ,
                                          Permission.MIGRATION_READ}),
    Role.AUDITOR: frozenset(_READ_ALL | {Permission.USERS_READ, Permission.AUDIT_READ, Permission.CLOUD_READ,
                                         Permission.JOBS_READ, Permission.CREDENTIALS_READ,
                                         Permission.MIGRATION_READ}),
}

# Roles whose reach is limited to their own agency.
AGENCY_SCOPED = frozenset({Role.MINISTRY})


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of a request."""

    user_id: int
    username: str
    role: Role
    agency_id: int | None
    agency_code: str | None = None
    token_id: int | None = None

    def has(self, permission: Permission) -> bool:
        return permission in ROLE_PERMISSIONS[self.role]

    @property
    def scoped(self) -> bool:
        return self.role in AGENCY_SCOPED

    def can_reach(self, agency_id: int | None) -> bool:
        """Whether this caller may act on (or read the private data of) the given agency."""
        return not self.scoped or (agency_id is not None and agency_id == self.agency_id)
