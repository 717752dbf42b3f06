from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from controlplane.auth.roles import Role
from controlplane.auth.security import password_problem
from controlplane.inputs import Input

AGENCY_CODE = r"^[A-Z0-9_]{2,16}$"


class AgencyKind(StrEnum):
    MINISTRY = "ministry"
    OFFICE = "office"
    AGENCY = "agency"
    LOCAL_GOVERNMENT = "local_government"


class AgencyCreate(Input):
    code: str = Field(pattern=AGENCY_CODE)
    name_ko: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    kind: AgencyKind
    parent_code: str | None = Field(default=None, pattern=AGENCY_CODE)


class AgencyUpdate(Input):
    name_ko: str | None = Field(default=None, min_length=1, max_length=200)
    name_en: str | None = Field(default=None, min_length=1, max_length=200)
    kind: AgencyKind | None = None


class AgencyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    code: str
    name_ko: str
    name_en: str
    kind: str
    parent_code: str | None = None


class _Password(Input):
    @field_validator("password", check_fields=False)
    @classmethod
    def _strong(cls, value: str | None) -> str | None:
        if value is not None and (problem := password_problem(value)):
            raise ValueError(f"password {problem}")
        return value


class UserCreate(_Password):
    username: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]{2,63}$")
    password: str
    full_name: str = Field(default="", max_length=200)
    email: EmailStr | None = None
    role: Role
    agency_code: str | None = Field(default=None, pattern=AGENCY_CODE)


class UserUpdate(_Password):
    password: str | None = None
    full_name: str | None = Field(default=None, max_length=200)
    email: EmailStr | None = None
    role: Role | None = None
    agency_code: str | None = Field(default=None, pattern=AGENCY_CODE)
    active: bool | None = None


class UserRead(BaseModel):
    id: int
    username: str
    full_name: str
    email: str | None
    role: Role
    agency_code: str | None
    active: bool
    created_at: datetime


class RevokedRead(BaseModel):
    tokens: int = Field(description="live login tokens revoked")
    api_keys: int = Field(description="live API keys revoked")


class UserUpdated(UserRead):
    revoked: RevokedRead = Field(description="what the update revoked: a new password revokes every token and "
                                             "API key of the user, deactivation the tokens")


class UnlockRead(BaseModel):
    username: str
    cleared: int = Field(description="client addresses whose failed logins of this name were forgotten")
    were_locked: int = Field(description="of them, addresses the name was locked from")


class TokenRequest(Input):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_at: datetime


class ApiKeyCreate(Input):
    name: str = Field(min_length=1, max_length=100)
    expires_in_days: int | None = Field(default=None, ge=1, le=3650)


class ApiKeyRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    prefix: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None


class ApiKeyCreated(ApiKeyRead):
    key: str = Field(description="shown once; only its hash is kept")


class Me(BaseModel):
    id: int
    username: str
    role: Role
    agency_code: str | None
    permissions: list[str]


class AuditRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: datetime
    actor: str
    actor_user_id: int | None
    action: str
    entity_type: str
    entity_id: str | None
    agency_id: int | None
    before: dict[str, Any] | None
    after: dict[str, Any] | None
