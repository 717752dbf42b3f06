"""Database access for the compliance register. Keyword-only; shares are SQL aggregates."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from controlplane.auth import audit
from controlplane.auth.models import Agency
from controlplane.auth.roles import Principal
from controlplane.auth.service import agency_by_code
from controlplane.clock import Clock
from controlplane.compliance import domain
from controlplane.compliance.domain import Evidence, Period, SessionStatus
from controlplane.compliance.models import Meeting, MeetingSession, Policy
from controlplane.compliance.schemas import (
    MeetingCreate,
    MeetingRead,
    MeetingUpdate,
    PolicyCreate,
    PolicyRead,
    SessionCreate,
    SessionRead,
    SessionUpdate,
    ShareRead,
    ShareReport,
    ShareRow,
)
from controlplane.compliance.tabular import parse_day
from controlplane.errors import Conflict, Forbidden, InvalidInput, NotFound
from controlplane.inputs import control_character

DATA_DIR = Path(__file__).parent / "data"
class ImportRefused(InvalidInput):
    code = "import_failed"


MEETING_FIELDS = ("code", "name_ko", "name_en", "host_agency_id", "cadence", "designated_from",
                  "designated_until", "active")
SESSION_FIELDS = ("meeting_id", "held_on", "status", "mode", "evidence", "note")
POLICY_FIELDS = ("effective_from", "effective_until", "designated_meetings", "target_percent",
                 "hybrid_counts_as_video", "note")


# --- policies -----------------------------------------------------------------------------------

def list_policies(session: Session) -> Sequence[Policy]:
    return session.scalars(select(Policy).order_by(Policy.effective_from)).all()


def domain_policies(session: Session) -> list[domain.Policy]:
    return [
        domain.Policy(
            effective_from=p.effective_from, effective_until=p.effective_until,
            designated_meetings=p.designated_meetings, target_percent=p.target_percent,
            hybrid_counts_as_video=p.hybrid_counts_as_video,
        )
        for p in list_policies(session)
    ]


def _overlaps(a_from: date, a_until: date | None, b_from: date, b_until: date | None) -> bool:
    return (a_until is None or b_from <= a_until) and (b_until is None or a_from <= b_until)


def create_policy(session: Session, *, clock: Clock, actor: audit.Actor, data: PolicyCreate) -> Policy:
    for other in list_policies(session):
        if _overlaps(data.effective_from, data.effective_until, other.effective_from, other.effective_until):
            raise Conflict(
                f"overlaps the policy in force from {other.effective_from}"
                f" until {other.effective_until or 'further notice'}; end that one first",
                field="effective_from",
            )
    policy = Policy(**data.model_dump())
    session.add(policy)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="create", entity_type="policy", entity_id=policy.id,
                 after=audit.snapshot(policy, POLICY_FIELDS))
    return policy


def end_policy(session: Session, *, clock: Clock, actor: audit.Actor, policy_id: int, until: date) -> Policy:
    policy = session.get(Policy, policy_id)
    if policy is None:
        raise NotFound(f"unknown policy {policy_id}", field="policy_id")
    if until < policy.effective_from:
        raise InvalidInput("effective_until must not be before effective_from", field="effective_until")
    for other in list_policies(session):
        if other.id != policy.id and _overlaps(policy.effective_from, until, other.effective_from,
                                               other.effective_until):
            raise Conflict(f"would overlap the policy in force from {other.effective_from}", field="effective_until")
    before = audit.snapshot(policy, POLICY_FIELDS)
    policy.effective_until = until
    audit.record(session, clock=clock, actor=actor, action="update", entity_type="policy", entity_id=policy.id,
                 before=before, after=audit.snapshot(policy, POLICY_FIELDS))
    return policy


def policy_read(policy: Policy) -> PolicyRead:
    return PolicyRead(id=policy.id, **audit.snapshot(policy, POLICY_FIELDS))


# --- meetings -----------------------------------------------------------------------------------

def meeting_read(meeting: Meeting) -> MeetingRead:
    return MeetingRead(
        id=meeting.id, code=meeting.code, name_ko=meeting.name_ko, name_en=meeting.name_en,
        host=meeting.host.code, participants=[a.code for a in meeting.participants],
        cadence=domain.Cadence(meeting.cadence), designated_from=meeting.designated_from,
        designated_until=meeting.designated_until, active=meeting.active,
    )


def list_meetings(
    session: Session, *, host: str | None = None, active: bool | None = None, query: str | None = None,
    limit: int = 500, offset: int = 0,
) -> Sequence[Meeting]:
    stmt = select(Meeting).order_by(Meeting.code).limit(limit).offset(offset)
    if host:
        stmt = stmt.where(Meeting.host_agency_id == agency_by_code(session, code=host, field="host").id)
    if active is not None:
        stmt = stmt.where(Meeting.active.is_(active))
    if query:
        like = f"%{query}%"
        stmt = stmt.where(or_(Meeting.name_ko.ilike(like), Meeting.name_en.ilike(like), Meeting.code.ilike(like)))
    return session.scalars(stmt).unique().all()


def get_meeting(session: Session, *, code: str, field: str = "code") -> Meeting:
    meeting = session.scalar(select(Meeting).where(Meeting.code == code))
    if meeting is None:
        raise NotFound(f"unknown meeting '{code}'", field=field)
    return meeting


def _participants(session: Session, codes: list[str], host: Agency) -> list[Agency]:
    wanted = sorted(set(codes))
    found = {a.code: a for a in session.scalars(select(Agency).where(Agency.code.in_(wanted)))}
    missing = [c for c in wanted if c not in found]
    if missing:
        raise InvalidInput(f"unknown agencies: {', '.join(missing)}", field="participants")
    if host.code in found:
        raise InvalidInput("the host agency is not also a participant", field="participants")
    return [found[c] for c in wanted]


def _meeting_snapshot(meeting: Meeting) -> dict[str, Any]:
    snap = audit.snapshot(meeting, MEETING_FIELDS)
    snap["participants"] = sorted(a.code for a in meeting.participants)
    return snap


def create_meeting(session: Session, *, clock: Clock, actor: audit.Actor, data: MeetingCreate) -> Meeting:
    if session.scalar(select(Meeting.id).where(Meeting.code == data.code)) is not None:
        raise Conflict(f"meeting '{data.code}' exists already", field="code")
    host = agency_by_code(session, code=data.host, field="host")
    now = clock.now()
    meeting = Meeting(
        code=data.code, name_ko=data.name_ko, name_en=data.name_en, host_agency_id=host.id, host=host,
        cadence=data.cadence.value, designated_from=data.designated_from, designated_until=data.designated_until,
        active=data.active, participants=_participants(session, data.participants, host),
        created_at=now, updated_at=now,
    )
    session.add(meeting)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="create", entity_type="meeting", entity_id=meeting.code,
                 after=_meeting_snapshot(meeting), agency_id=host.id)
    return meeting


def update_meeting(
    session: Session, *, clock: Clock, actor: audit.Actor, code: str, data: MeetingUpdate
) -> Meeting:
    meeting = get_meeting(session, code=code)
    before = _meeting_snapshot(meeting)
    fields = data.model_dump(exclude_unset=True)
    if fields.get("host"):
        meeting.host = agency_by_code(session, code=fields.pop("host"), field="host")
        meeting.host_agency_id = meeting.host.id
    codes = fields.pop("participants", None)
    # Re-checked on a host change too: the host is never also a participant.
    meeting.participants = _participants(
        session, codes if codes is not None else [a.code for a in meeting.participants], meeting.host
    )
    for name, value in fields.items():
        if value is None and name not in ("designated_until",):
            raise InvalidInput(f"{name} cannot be null", field=name)
        setattr(meeting, name, getattr(value, "value", value))
    if meeting.designated_until and meeting.designated_until < meeting.designated_from:
        raise InvalidInput("designated_until must not be before designated_from", field="designated_until")
    after = _meeting_snapshot(meeting)
    if before != after:
        meeting.updated_at = clock.now()
        audit.record(session, clock=clock, actor=actor, action="update", entity_type="meeting",
                     entity_id=meeting.code, before=before, after=after, agency_id=meeting.host_agency_id)
    return meeting


# --- seed catalogue ------------------------------------------------------------------------------

def seed_policies(session: Session, *, clock: Clock, actor: audit.Actor, path: Path | None = None) -> int:
    rows = yaml.safe_load((path or DATA_DIR / "policies.yaml").read_text(encoding="utf-8"))
    known = {p.effective_from for p in list_policies(session)}
    created = 0
    for row in rows:
        if row["effective_from"] not in known:
            create_policy(session, clock=clock, actor=actor, data=PolicyCreate.model_validate(row))
            created += 1
    return created


def seed_meetings(session: Session, *, clock: Clock, actor: audit.Actor, path: Path | None = None) -> int:
    """Load the designated-meeting catalogue idempotently: create missing ones, bring others up to date."""
    rows = yaml.safe_load((path or DATA_DIR / "designated_meetings.yaml").read_text(encoding="utf-8"))
    known = set(session.scalars(select(Meeting.code)))
    created = 0
    for row in rows:
        data = MeetingCreate.model_validate(row)
        if data.code in known:
            update_meeting(session, clock=clock, actor=actor, code=data.code,
                           data=MeetingUpdate.model_validate(data.model_dump(exclude={"code"})))
        else:
            create_meeting(session, clock=clock, actor=actor, data=data)
            created += 1
    return created


# --- sessions -----------------------------------------------------------------------------------

def session_read(row: MeetingSession) -> SessionRead:
    return SessionRead(
        id=row.id, meeting=row.meeting.code, host=row.meeting.host.code, held_on=row.held_on,
        mode=domain.Mode(row.mode), status=SessionStatus(row.status), evidence=Evidence(row.evidence),
        note=row.note, created_at=row.created_at,
    )


def ensure_may_record(actor: audit.Actor, meeting: Meeting) -> None:
    if isinstance(actor, Principal) and not actor.can_reach(meeting.host_agency_id):
        raise Forbidden(
            f"meeting '{meeting.code}' is hosted by {meeting.host.code}; "
            f"you may record sessions only for meetings hosted by {actor.agency_code}",
            field="meeting",
        )


def check_session_rules(meeting: Meeting, held_on: date, status: str, today: date) -> tuple[str, str] | None:
    """(field, reason) when a session breaks a rule of the register, else None."""
    if not domain.is_designated(meeting.designated_from, meeting.designated_until, held_on):
        until = meeting.designated_until or "further notice"
        return "held_on", f"meeting '{meeting.code}' is designated from {meeting.designated_from} until {until}"
    if status == SessionStatus.HELD and held_on > today:
        return "held_on", f"a held session cannot be in the future ({held_on} is after {today})"
    return None


def _session_exists(session: Session, meeting_id: int, held_on: date, exclude_id: int | None = None) -> bool:
    stmt = select(MeetingSession.id).where(MeetingSession.meeting_id == meeting_id, MeetingSession.held_on == held_on)
    if exclude_id is not None:
        stmt = stmt.where(MeetingSession.id != exclude_id)
    return session.scalar(stmt) is not None


def create_session(
    session: Session, *, clock: Clock, actor: audit.Actor, data: SessionCreate,
    evidence: Evidence = Evidence.MANUAL,
) -> MeetingSession:
    meeting = get_meeting(session, code=data.meeting, field="meeting")
    ensure_may_record(actor, meeting)
    if problem := check_session_rules(meeting, data.held_on, data.status, clock.today()):
        raise InvalidInput(problem[1], field=problem[0])
    if _session_exists(session, meeting.id, data.held_on):
        raise Conflict(f"meeting '{meeting.code}' already has a session on {data.held_on}", field="held_on")
    now = clock.now()
    row = MeetingSession(
        meeting_id=meeting.id, meeting=meeting, held_on=data.held_on, status=data.status.value,
        mode=data.mode.value, evidence=evidence.value, note=data.note, created_at=now, updated_at=now,
    )
    session.add(row)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="create", entity_type="session", entity_id=row.id,
                 after=audit.snapshot(row, SESSION_FIELDS), agency_id=meeting.host_agency_id)
    return row


def get_session_row(session: Session, *, session_id: int) -> MeetingSession:
    row = session.get(MeetingSession, session_id)
    if row is None:
        raise NotFound(f"unknown session {session_id}", field="session_id")
    return row


def update_session(
    session: Session, *, clock: Clock, actor: audit.Actor, session_id: int, data: SessionUpdate
) -> MeetingSession:
    row = get_session_row(session, session_id=session_id)
    ensure_may_record(actor, row.meeting)
    before = audit.snapshot(row, SESSION_FIELDS)
    for name, value in data.model_dump(exclude_unset=True).items():
        if value is None:
            raise InvalidInput(f"{name} cannot be null", field=name)
        setattr(row, name, getattr(value, "value", value))
    if problem := check_session_rules(row.meeting, row.held_on, row.status, clock.today()):
        raise InvalidInput(problem[1], field=problem[0])
    with session.no_autoflush:  # look for a twin before the changed row is written
        twin = _session_exists(session, row.meeting_id, row.held_on, exclude_id=row.id)
    if twin:
        raise Conflict(f"meeting '{row.meeting.code}' already has a session on {row.held_on}", field="held_on")
    after = audit.snapshot(row, SESSION_FIELDS)
    if before != after:
        row.updated_at = clock.now()
        audit.record(session, clock=clock, actor=actor, action="update", entity_type="session", entity_id=row.id,
                     before=before, after=after, agency_id=row.meeting.host_agency_id)
    return row


def delete_session(session: Session, *, clock: Clock, actor: audit.Actor, session_id: int) -> None:
    row = get_session_row(session, session_id=session_id)
    ensure_may_record(actor, row.meeting)
    audit.record(session, clock=clock, actor=actor, action="delete", entity_type="session", entity_id=row.id,
                 before=audit.snapshot(row, SESSION_FIELDS), agency_id=row.meeting.host_agency_id)
    session.delete(row)


def list_sessions(
    session: Session, *, viewer: Principal, meeting: str | None = None, host: str | None = None,
    start: date | None = None, end: date | None = None, limit: int = 100, offset: int = 0,
) -> Sequence[MeetingSession]:
    stmt = (
        select(MeetingSession).join(MeetingSession.meeting)
        .order_by(MeetingSession.held_on.desc(), MeetingSession.id.desc()).limit(limit).offset(offset)
    )
    if viewer.scoped:
        stmt = stmt.where(Meeting.host_agency_id == viewer.agency_id)
    if meeting:
        stmt = stmt.where(Meeting.id == get_meeting(session, code=meeting, field="meeting").id)
    if host:
        stmt = stmt.where(Meeting.host_agency_id == agency_by_code(session, code=host, field="ministry").id)
    if start:
        stmt = stmt.where(MeetingSession.held_on >= start)
    if end:
        stmt = stmt.where(MeetingSession.held_on <= end)
    return session.scalars(stmt).all()


# --- shares -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Scope:
    key: str
    name_ko: str
    name_en: str
    host: str | None


def _tallies(
    session: Session, *, period: Period, segments: list[domain.PolicySegment], key: Any, host_id: int | None
) -> dict[tuple[Any, int], domain.Tally]:
    """Session counts per (key, policy segment), counted by the database."""
    if not segments:  # no rule in force during the period: nothing is judged
        return {}
    s = MeetingSession
    segment = case(
        *[(and_(s.held_on >= seg.start, s.held_on < seg.end), i) for i, seg in enumerate(segments)], else_=-1
    ).label("segment")
    inner = (
        select(key.label("key"), segment, s.status.label("status"), s.mode.label("mode"))
        .join(Meeting, Meeting.id == s.meeting_id)
        .where(
            s.held_on >= period.start, s.held_on < period.end,
            s.status != SessionStatus.CANCELLED.value,
            s.held_on >= Meeting.designated_from,
            or_(Meeting.designated_until.is_(None), s.held_on <= Meeting.designated_until),
        )
    )
    if host_id is not None:
        inner = inner.where(Meeting.host_agency_id == host_id)
    sub = inner.subquery()
    rows = session.execute(
        select(sub.c.key, sub.c.segment, sub.c.status, sub.c.mode, func.count())
        .where(sub.c.segment >= 0)
        .group_by(sub.c.key, sub.c.segment, sub.c.status, sub.c.mode)
    )
    counts: dict[tuple[Any, int], dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for row_key, seg, status, mode, count in rows:
        bucket = counts[(row_key, seg)]
        bucket["scheduled" if status == SessionStatus.SCHEDULED.value else mode] += count
    return {k: domain.Tally(**v) for k, v in counts.items()}


def _share_read(share: domain.Share) -> ShareRead:
    return ShareRead(
        held=share.held, video=share.video, scheduled=share.scheduled, share=share.share, target=share.target,
        required=share.required, video_needed=share.video_needed,
        forecast="unreachable" if share.video_needed is None else share.video_needed, status=share.status,
    )


def _evaluate(
    tallies: dict[tuple[Any, int], domain.Tally], segments: list[domain.PolicySegment], key: Any
) -> domain.Share:
    return domain.evaluate(
        domain.SegmentTally(seg.policy, tallies.get((key, i), domain.Tally())) for i, seg in enumerate(segments)
    )


def _designated_in(period: Period) -> Any:
    return and_(
        Meeting.designated_from < period.end,
        or_(Meeting.designated_until.is_(None), Meeting.designated_until >= period.start),
    )


def share_report(
    session: Session, *, period: Period, scope: str = "ministry", ministry: str | None = None
) -> ShareReport:
    """Shares for a period: government-wide, plus rows per ministry or per meeting."""
    if scope not in ("ministry", "meeting"):
        raise InvalidInput("scope must be 'ministry' or 'meeting'", field="scope")
    segments = domain.policy_segments(domain_policies(session), period)
    host = agency_by_code(session, code=ministry, field="ministry") if ministry else None
    if host is not None:
        scope = "meeting"

    # One aggregate by host ministry serves the ministry rows, the ministry total and (summed) the
    # government total: every meeting has exactly one host.
    by_host = _tallies(session, period=period, segments=segments, key=Meeting.host_agency_id, host_id=None)
    totals: dict[tuple[Any, int], domain.Tally] = defaultdict(domain.Tally)
    for (_, segment), tally in by_host.items():
        totals[(None, segment)] += tally
    government = _evaluate(totals, segments, None)

    if scope == "ministry":
        tallies = by_host
        scopes = {
            a.id: _Scope(a.code, a.name_ko, a.name_en, a.code)
            for a in session.scalars(
                select(Agency).where(Agency.id.in_(select(Meeting.host_agency_id).where(_designated_in(period))))
                .order_by(Agency.code)
            )
        }
    else:
        tallies = _tallies(session, period=period, segments=segments, key=Meeting.id,
                           host_id=host.id if host else None)
        stmt = select(Meeting).where(_designated_in(period)).order_by(Meeting.code)
        if host is not None:
            stmt = stmt.where(Meeting.host_agency_id == host.id)
        scopes = {m.id: _Scope(m.code, m.name_ko, m.name_en, m.host.code) for m in session.scalars(stmt)}

    rows = [
        ShareRow(key=s.key, name_ko=s.name_ko, name_en=s.name_en, host=s.host,
                 **_share_read(_evaluate(tallies, segments, scope_id)).model_dump())
        for scope_id, s in scopes.items()
    ]
    ministry_row = None
    if host is not None:
        ministry_row = ShareRow(key=host.code, name_ko=host.name_ko, name_en=host.name_en, host=host.code,
                                **_share_read(_evaluate(by_host, segments, host.id)).model_dump())
    return ShareReport(
        period=period.label, start=period.start, end=period.end - timedelta(days=1),
        scope=scope, government=_share_read(government), ministry=ministry_row, rows=rows,
    )


def current_year_snapshot(session: Session, *, today: date) -> tuple[ShareReport, float | None]:
    """This year's report by ministry and the target in force today, for the metrics cache."""
    report = share_report(session, period=domain.parse_period(str(today.year)))
    policy = domain.policy_in_force(domain_policies(session), today)
    return report, float(policy.target) if policy else None


def import_sessions(
    session: Session, *, clock: Clock, actor: audit.Actor, rows: Iterable[tuple[int, dict[str, Any]]],
    source: str,
) -> int:
    """Record many sessions at once, all or nothing: any bad row refuses the whole file, naming every bad row."""
    meetings = {m.code: m for m in session.scalars(select(Meeting))}
    today = clock.today()
    errors: list[dict[str, Any]] = []
    accepted: list[tuple[int, Meeting, SessionCreate]] = []
    seen: dict[tuple[int, date], int] = {}

    def bad(number: int, field: str, reason: str) -> None:
        errors.append({"row": number, "field": field, "reason": reason})

    for number, values in rows:
        code = str(values.get("meeting_code") or "").strip()
        meeting = meetings.get(code)
        if meeting is None:
            bad(number, "meeting_code", f"unknown meeting '{code}'")
            continue
        try:
            held_on = parse_day(values.get("held_on"))
        except (TypeError, ValueError):
            bad(number, "held_on", f"bad date '{values.get('held_on')}': expected YYYY-MM-DD")
            continue
        mode = str(values.get("mode") or "").strip().lower()
        if mode not in domain.Mode.__members__.values():
            bad(number, "mode", f"bad mode '{values.get('mode')}': expected video, in_person or hybrid")
            continue
        status = str(values.get("status") or SessionStatus.HELD.value).strip().lower()
        if status not in SessionStatus.__members__.values():
            bad(number, "status", f"bad status '{values.get('status')}': expected held, scheduled or cancelled")
            continue
        if isinstance(actor, Principal) and not actor.can_reach(meeting.host_agency_id):
            bad(number, "meeting_code", f"meeting '{code}' is hosted by {meeting.host.code}, not your agency")
            continue
        if problem := check_session_rules(meeting, held_on, status, today):
            bad(number, problem[0], problem[1])
            continue
        if (meeting.id, held_on) in seen:
            bad(number, "held_on", f"duplicate session: same meeting and date as row {seen[(meeting.id, held_on)]}")
            continue
        seen[(meeting.id, held_on)] = number
        note = str(values.get("note") or "")[:1000]
        if (char := control_character(note)) is not None:
            bad(number, "note", f"control character {char} not allowed (text may hold tabs and line breaks only)")
            continue
        accepted.append((number, meeting, SessionCreate(
            meeting=code, held_on=held_on, mode=domain.Mode(mode), status=SessionStatus(status), note=note,
        )))

    if accepted:
        days = [data.held_on for _, _, data in accepted]
        existing = {
            (meeting_id, held_on) for meeting_id, held_on in session.execute(
                select(MeetingSession.meeting_id, MeetingSession.held_on)
                .where(MeetingSession.held_on >= min(days), MeetingSession.held_on <= max(days))
            )
        }
        for number, meeting, data in accepted:
            if (meeting.id, data.held_on) in existing:
                bad(number, "held_on", f"duplicate session: meeting '{meeting.code}' already has a session on "
                                       f"{data.held_on}")
    if errors:
        errors.sort(key=lambda e: e["row"])
        first = errors[0]
        raise ImportRefused(
            f"{len(errors)} bad row(s); nothing was imported. First: row {first['row']}, {first['field']}: "
            f"{first['reason']}",
            field="file", details=errors,
        )
    if not accepted:
        raise InvalidInput("the file has no data rows", field="file")

    now = clock.now()
    session.add_all(
        MeetingSession(meeting_id=meeting.id, held_on=data.held_on, status=data.status.value, mode=data.mode.value,
                       evidence=Evidence.MANUAL.value, note=data.note, created_at=now, updated_at=now)
        for _, meeting, data in accepted
    )
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="import", entity_type="session",
                 after={"source": source, "imported": len(accepted)},
                 agency_id=actor.agency_id if isinstance(actor, Principal) else None)
    return len(accepted)
