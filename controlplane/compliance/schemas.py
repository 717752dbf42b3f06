from __future__ import annotations

from datetime import date, datetime

from pydantic import BaseModel, Field, model_validator

from controlplane.auth.schemas import AGENCY_CODE
from controlplane.compliance.domain import Cadence, Evidence, Mode, SessionStatus, ShareStatus
from controlplane.inputs import Input, IsoDate

MEETING_CODE = r"^[A-Z0-9][A-Z0-9-]{2,31}$"


class _DesignationWindow(Input):
    @model_validator(mode="after")
    def _until_after_from(self) -> _DesignationWindow:
        start, end = getattr(self, "designated_from", None), getattr(self, "designated_until", None)
        if start and end and end < start:
            raise ValueError("designated_until must not be before designated_from")
        return self


class MeetingCreate(_DesignationWindow):
    code: str = Field(pattern=MEETING_CODE)
    name_ko: str = Field(min_length=1, max_length=200)
    name_en: str = Field(min_length=1, max_length=200)
    host: str = Field(pattern=AGENCY_CODE, description="host agency code")
    participants: list[str] = Field(default_factory=list, max_length=100)
    cadence: Cadence
    designated_from: IsoDate
    designated_until: IsoDate | None = None
    active: bool = True


class MeetingUpdate(_DesignationWindow):
    name_ko: str | None = Field(default=None, min_length=1, max_length=200)
    name_en: str | None = Field(default=None, min_length=1, max_length=200)
    host: str | None = Field(default=None, pattern=AGENCY_CODE)
    participants: list[str] | None = Field(default=None, max_length=100)
    cadence: Cadence | None = None
    designated_from: IsoDate | None = None
    designated_until: IsoDate | None = None
    active: bool | None = None


class MeetingRead(BaseModel):
    id: int
    code: str
    name_ko: str
    name_en: str
    host: str
    participants: list[str]
    cadence: Cadence
    designated_from: IsoDate
    designated_until: IsoDate | None
    active: bool


class PolicyCreate(Input):
    effective_from: IsoDate
    effective_until: IsoDate | None = None
    designated_meetings: int = Field(ge=1, le=10000)
    target_percent: int = Field(ge=0, le=100)
    hybrid_counts_as_video: bool = False
    note: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _ordered(self) -> PolicyCreate:
        if self.effective_until and self.effective_until < self.effective_from:
            raise ValueError("effective_until must not be before effective_from")
        return self


class PolicyRead(PolicyCreate):
    id: int


class SessionCreate(Input):
    meeting: str = Field(pattern=MEETING_CODE, description="designated meeting code")
    held_on: IsoDate
    mode: Mode
    status: SessionStatus = SessionStatus.HELD
    note: str = Field(default="", max_length=1000)


class SessionUpdate(Input):
    held_on: IsoDate | None = None
    mode: Mode | None = None
    status: SessionStatus | None = None
    note: str | None = Field(default=None, max_length=1000)


class SessionRead(BaseModel):
    id: int
    meeting: str
    host: str
    held_on: IsoDate
    mode: Mode
    status: SessionStatus
    evidence: Evidence
    note: str
    created_at: datetime


class ShareRead(BaseModel):
    held: int
    video: int
    scheduled: int
    share: float | None
    target: float | None
    required: int
    video_needed: int | None
    forecast: int | str = Field(description="video sessions still needed: 0 if reached, 'unreachable' if impossible")
    status: ShareStatus


class ShareRow(ShareRead):
    key: str
    name_ko: str
    name_en: str
    host: str | None = None


class ShareReport(BaseModel):
    period: str
    start: date
    end: date
    scope: str
    government: ShareRead
    ministry: ShareRow | None = Field(default=None, description="the ministry's total, when filtered by one")
    rows: list[ShareRow]


class ImportResult(BaseModel):
    imported: int
