"""The real catalogue (agencies, policies, ~200 designated meetings) loads completely and idempotently."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest
import yaml
from sqlalchemy import and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from controlplane.auth import service as auth_service
from controlplane.auth.models import Agency, AuditEntry
from controlplane.compliance import service as compliance_service
from controlplane.compliance.models import Meeting, Policy, meeting_participants
from controlplane.db import transaction

MEETINGS_FILE = Path(compliance_service.DATA_DIR) / "designated_meetings.yaml"


def _load(sessions: sessionmaker[Session], clock) -> tuple[int, int, int]:
    with transaction(sessions) as s:
        return (auth_service.seed_agencies(s, clock=clock, actor="test"),
                compliance_service.seed_policies(s, clock=clock, actor="test"),
                compliance_service.seed_meetings(s, clock=clock, actor="test"))


def _designated_on(s: Session, day: date) -> int:
    return s.scalar(select(func.count()).select_from(Meeting).where(and_(
        Meeting.designated_from <= day, or_(Meeting.designated_until.is_(None), Meeting.designated_until >= day),
    ))) or 0


def _counts(s: Session) -> dict[str, int]:
    return {
        "agencies": s.scalar(select(func.count()).select_from(Agency)) or 0,
        "policies": s.scalar(select(func.count()).select_from(Policy)) or 0,
        "meetings": s.scalar(select(func.count()).select_from(Meeting)) or 0,
        "participants": s.scalar(select(func.count()).select_from(meeting_participants)) or 0,
        "audit": s.scalar(select(func.count()).select_from(AuditEntry)) or 0,
    }


def _snapshot(s: Session) -> list:
    meetings = [compliance_service.meeting_read(m).model_dump() for m in compliance_service.list_meetings(
        s, limit=1000)]
    agencies = [auth_service.agency_read(a).model_dump() for a in auth_service.list_agencies(s)]
    policies = [compliance_service.policy_read(p).model_dump() for p in compliance_service.list_policies(s)]
    return [meetings, agencies, policies]


@pytest.fixture
def loaded(sessions, clock):
    return _load(sessions, clock)


def test_catalogue_loads_200_meetings_for_2014_and_135_for_2013_all_resolved(sessions, loaded):
    new_agencies, new_policies, new_meetings = loaded
    rows = yaml.safe_load(MEETINGS_FILE.read_text(encoding="utf-8"))
    assert new_meetings == len(rows) and new_policies == 2 and new_agencies > 50
    with transaction(sessions) as s:
        assert 195 <= _designated_on(s, date(2014, 6, 30)) <= 205
        assert _designated_on(s, date(2013, 6, 30)) == 135
        # The policies in force say the same numbers.
        by_start = {p.effective_from: p for p in compliance_service.list_policies(s)}
        assert by_start[date(2011, 1, 1)].designated_meetings == 135
        assert by_start[date(2011, 1, 1)].target_percent == 30
        assert by_start[date(2014, 1, 1)].designated_meetings == 200
        assert by_start[date(2014, 1, 1)].target_percent == 50

    # Every host and participant resolves to a loaded agency, as the file says.
    rows = {r["code"]: r for r in rows}
    with transaction(sessions) as s:
        meetings = compliance_service.list_meetings(s, limit=1000)
        assert {m.code for m in meetings} == set(rows)
        for meeting in meetings:
            row = rows[meeting.code]
            assert meeting.host is not None and meeting.host.code == row["host"], meeting.code
            assert sorted(a.code for a in meeting.participants) == sorted(set(row["participants"])), meeting.code
            assert meeting.host.code not in {a.code for a in meeting.participants}, meeting.code
            assert meeting.designated_from == row["designated_from"]
            assert meeting.designated_until == row["designated_until"]
        parents = s.scalars(select(Agency).where(Agency.parent_id.is_not(None))).all()
        assert all(a.parent is not None for a in parents)


def test_loading_twice_creates_and_changes_nothing(sessions, clock, loaded):
    with transaction(sessions) as s:
        counts, snapshot = _counts(s), _snapshot(s)
    assert counts["audit"] > counts["meetings"]  # the first load was audited
    assert _load(sessions, clock) == (0, 0, 0)
    with transaction(sessions) as s:
        assert _counts(s) == counts
        assert _snapshot(s) == snapshot
