"""Plausible session history for the designated meetings, for demos and benchmarks (deterministic)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from controlplane.clock import Clock
from controlplane.compliance.domain import Cadence, Evidence, Mode, SessionStatus
from controlplane.compliance.models import Meeting, MeetingSession

CADENCE_DAYS = {
    Cadence.WEEKLY: 7, Cadence.BIWEEKLY: 14, Cadence.MONTHLY: 30, Cadence.QUARTERLY: 91,
    Cadence.SEMIANNUAL: 182, Cadence.ANNUAL: 365, Cadence.AD_HOC: 45,
}


def _video_probability(year: int, habit: float) -> float:
    # Video use grew after the 2014 rule and again after 2020; some meetings keep meeting in person.
    return max(0.05, min(0.8, 0.2 + 0.03 * max(0, year - 2011) + (0.1 if year >= 2020 else 0.0) + habit))


def session_rows(
    meetings: list[tuple[int, str, date, date | None]], *, start: date, end: date, today: date, seed: int = 2014
) -> Iterator[dict[str, object]]:
    """Rows for meeting_sessions: (meeting id, cadence, designated from/until) -> one session per cadence step."""
    rng = random.Random(seed)
    for meeting_id, cadence, designated_from, designated_until in meetings:
        step = CADENCE_DAYS[Cadence(cadence)]
        habit = rng.uniform(-0.35, 0.2)
        day = max(start, designated_from) + timedelta(days=rng.randrange(step))
        last = min(end, designated_until) if designated_until else end
        while day <= last:
            held = day <= today
            roll = rng.random()
            video_p = _video_probability(day.year, habit)
            mode = Mode.VIDEO if roll < video_p else Mode.HYBRID if roll < video_p + 0.08 else Mode.IN_PERSON
            yield {
                "meeting_id": meeting_id, "held_on": day, "mode": mode.value, "evidence": Evidence.MANUAL.value,
                "status": (SessionStatus.HELD if held else SessionStatus.SCHEDULED).value, "note": "",
            }
            day += timedelta(days=step + rng.randint(-2, 2))


def load_demo_sessions(session: Session, *, clock: Clock, start: date, end: date, seed: int = 2014) -> int:
    """Insert demo sessions, only into a register that has no sessions at all; returns how many."""
    if session.scalar(select(MeetingSession.id).limit(1)) is not None:
        return 0
    meetings = [
        (m.id, m.cadence, m.designated_from, m.designated_until)
        for m in session.scalars(select(Meeting).order_by(Meeting.id))
    ]
    now = clock.now()
    rows = [dict(r, created_at=now, updated_at=now)
            for r in session_rows(meetings, start=start, end=end, today=clock.today(), seed=seed)]
    for chunk in range(0, len(rows), 5000):
        session.execute(insert(MeetingSession), rows[chunk:chunk + 5000])
    return len(rows)
