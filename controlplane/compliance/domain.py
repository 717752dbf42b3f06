"""Video-meeting compliance rules, as pure functions over plain values.

The rule: a share of the designated inter-agency meetings' sessions must be held
by video (since 2014: at least 50% of ~200 meetings; before: 30% of 135).
share = sessions counted as video / sessions held, over a year, quarter or month.
Policies are effective-dated; each session is judged by the policy in force on
its date, and the policy says whether a hybrid session counts as video.

Standard library only: no web, database or validation framework here.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum
from fractions import Fraction
from itertools import pairwise


class Mode(StrEnum):
    """How a session was (or will be) held."""

    VIDEO = "video"
    IN_PERSON = "in_person"
    HYBRID = "hybrid"


class SessionStatus(StrEnum):
    """Life cycle of a session; cancelled sessions never count."""

    HELD = "held"
    SCHEDULED = "scheduled"
    CANCELLED = "cancelled"


class Evidence(StrEnum):
    """Where a session's mode comes from: typed in, or seen on the video bridge."""

    MANUAL = "manual"
    BRIDGE = "bridge"


class Cadence(StrEnum):
    """How often a designated meeting is meant to sit."""

    WEEKLY = "weekly"
    BIWEEKLY = "biweekly"
    MONTHLY = "monthly"
    QUARTERLY = "quarterly"
    SEMIANNUAL = "semiannual"
    ANNUAL = "annual"
    AD_HOC = "ad_hoc"


class ShareStatus(StrEnum):
    """Verdict on a scope's video share over a period (see `evaluate`)."""

    ON_TRACK = "on_track"
    AT_RISK = "at_risk"
    BELOW = "below"
    NO_DATA = "no_data"


# --------------------------------------------------------------------------- periods

_MIN_YEAR = 1990
_MAX_YEAR = 2100

_PERIOD_KINDS = ("year", "quarter", "month")
_PERIOD_RE = re.compile(r"(?P<year>[0-9]{4})(?:-(?:[Qq](?P<quarter>[1-4])|(?P<month>0[1-9]|1[0-2])))?")


class PeriodError(ValueError):
    """A period text that is not YYYY, YYYY-Qn or YYYY-MM (or is out of range)."""


def _first_of_month(year: int, month: int) -> date:
    """First day of `month` (1..13, 13 meaning January of the next year)."""
    return date(year + 1, 1, 1) if month == 13 else date(year, month, 1)


@dataclass(frozen=True)
class Period:
    """A calendar year, quarter or month: `start` inclusive, `end` exclusive."""

    kind: str
    start: date
    end: date

    def __post_init__(self) -> None:
        if self.kind not in _PERIOD_KINDS:
            raise PeriodError(f"period kind must be year, quarter or month (got {self.kind!r})")
        if not self.start < self.end:
            raise PeriodError(f"period start {self.start} must be before its end {self.end}")

    @property
    def label(self) -> str:
        """'2014', '2014-Q2' or '2014-03'."""
        year, month = self.start.year, self.start.month
        if self.kind == "year":
            return f"{year:04d}"
        if self.kind == "quarter":
            return f"{year:04d}-Q{(month - 1) // 3 + 1}"
        return f"{year:04d}-{month:02d}"

    def contains(self, day: date) -> bool:
        """True when `day` falls in the period (start <= day < end)."""
        return self.start <= day < self.end


def parse_period(text: str) -> Period:
    """Parse 'YYYY', 'YYYY-Qn' (q in any case) or 'YYYY-MM'; years 1990..2100.

    Anything else raises PeriodError naming the offending text.
    """
    match = _PERIOD_RE.fullmatch(text)
    if match is None or not _MIN_YEAR <= int(match["year"]) <= _MAX_YEAR:
        raise PeriodError(f"period must be YYYY, YYYY-Qn or YYYY-MM (got {text!r})")
    year = int(match["year"])
    if match["quarter"] is not None:
        first = (int(match["quarter"]) - 1) * 3 + 1
        return Period("quarter", date(year, first, 1), _first_of_month(year, first + 3))
    if match["month"] is not None:
        month = int(match["month"])
        return Period("month", date(year, month, 1), _first_of_month(year, month + 1))
    return Period("year", date(year, 1, 1), date(year + 1, 1, 1))


# -------------------------------------------------------------------------- policies


@dataclass(frozen=True)
class Policy:
    """The rule in force from `effective_from` to `effective_until` (inclusive; None = open)."""

    effective_from: date
    effective_until: date | None
    designated_meetings: int
    target_percent: int
    hybrid_counts_as_video: bool

    def __post_init__(self) -> None:
        if self.effective_until is not None and self.effective_until < self.effective_from:
            raise ValueError(f"policy ends ({self.effective_until}) before it starts ({self.effective_from})")
        if not 0 <= self.target_percent <= 100:
            raise ValueError(f"target_percent must be 0..100 (got {self.target_percent})")
        if self.designated_meetings < 0:
            raise ValueError(f"designated_meetings must not be negative (got {self.designated_meetings})")

    @property
    def target(self) -> Fraction:
        """The target as an exact fraction (50 -> 1/2)."""
        return Fraction(self.target_percent, 100)

    def in_force_on(self, day: date) -> bool:
        """True when `day` is within the policy's dates (both ends inclusive)."""
        return is_designated(self.effective_from, self.effective_until, day)


def _end_exclusive(policy: Policy) -> date | None:
    """Day after the policy's last day; None when open-ended."""
    if policy.effective_until is None or policy.effective_until >= date.max:
        return None
    return policy.effective_until + timedelta(days=1)


def _sorted_checked(policies: Iterable[Policy]) -> list[Policy]:
    """Policies ordered by start; ValueError if any two overlap."""
    ordered = sorted(policies, key=lambda p: p.effective_from)
    for earlier, later in pairwise(ordered):
        end = _end_exclusive(earlier)
        if end is None or end > later.effective_from:
            raise ValueError(
                "policies must not overlap: the one from "
                f"{earlier.effective_from} overlaps the one from {later.effective_from}"
            )
    return ordered


def policy_in_force(policies: Iterable[Policy], day: date) -> Policy | None:
    """The policy in force on `day`, or None; ValueError if policies overlap."""
    return next((p for p in _sorted_checked(policies) if p.in_force_on(day)), None)


@dataclass(frozen=True)
class PolicySegment:
    """The part of a period, [start, end), that one policy covers."""

    policy: Policy
    start: date
    end: date


def policy_segments(policies: Iterable[Policy], period: Period) -> list[PolicySegment]:
    """Split `period` by the policies covering it, ordered by start.

    Days no policy covers are left out; overlapping policies raise ValueError.
    """
    segments: list[PolicySegment] = []
    for policy in _sorted_checked(policies):
        policy_end = _end_exclusive(policy)
        start = max(policy.effective_from, period.start)
        end = period.end if policy_end is None else min(policy_end, period.end)
        if start < end:
            segments.append(PolicySegment(policy, start, end))
    return segments


def is_designated(designated_from: date, designated_until: date | None, day: date) -> bool:
    """True when `day` is within [designated_from, designated_until]; None = open-ended."""
    return designated_from <= day and (designated_until is None or day <= designated_until)


def counts_as_video(mode: Mode, policy: Policy) -> bool:
    """Video always counts; hybrid counts only if the policy says so; in-person never."""
    return mode == Mode.VIDEO or (mode == Mode.HYBRID and policy.hybrid_counts_as_video)


# -------------------------------------------------------------------------- shares


@dataclass(frozen=True)
class Tally:
    """Session counts for one scope under one policy; cancelled sessions are never counted."""

    video: int = 0
    in_person: int = 0
    hybrid: int = 0
    scheduled: int = 0

    def __post_init__(self) -> None:
        if min(self.video, self.in_person, self.hybrid, self.scheduled) < 0:
            raise ValueError(f"session counts must not be negative: {self}")

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.video + other.video,
            self.in_person + other.in_person,
            self.hybrid + other.hybrid,
            self.scheduled + other.scheduled,
        )

    @property
    def held(self) -> int:
        """Sessions held, whatever their mode."""
        return self.video + self.in_person + self.hybrid


@dataclass(frozen=True)
class SegmentTally:
    """A tally together with the policy its sessions are judged by."""

    policy: Policy
    tally: Tally


@dataclass(frozen=True)
class Share:
    """The outcome of `evaluate` for one scope and period."""

    held: int
    video: int
    scheduled: int
    share: float | None
    target: float | None
    required: int
    video_needed: int | None
    status: ShareStatus


def _rounded(value: Fraction) -> float:
    return float(round(value, 4))


def evaluate(parts: Iterable[SegmentTally]) -> Share:
    """Judge a scope's video share over a period from its per-policy tallies.

    - Each part is judged by its own policy: hybrid counts as video only where
      that part's policy says so. Parts may share a policy; they simply add up.
    - share = video / held (4 places), None when nothing was held.
    - Effective target = sum(target_i * (held_i + scheduled_i)) / sum(held_i + scheduled_i),
      so a mid-period change weighs each session by the rule on its date; with
      parts but no sessions it is the plain mean of the parts' targets; with no
      parts, None.
    - required = ceil(sum(target_i * (held_i + scheduled_i))), computed exactly
      (50% of 3 sessions requires 2).
    - video_needed = max(0, required - video): how many scheduled sessions must
      still be held by video; None when that exceeds the sessions scheduled.
    - status: NO_DATA if nothing held or scheduled; AT_RISK if nothing held yet
      but some scheduled; BELOW if unreachable (video_needed None); ON_TRACK if
      video_needed == 0; otherwise AT_RISK (reachable with the scheduled ones).
    """
    held = video = scheduled = 0
    weighted = Fraction(0)
    targets: list[Fraction] = []
    for part in parts:
        tally, policy = part.tally, part.policy
        held += tally.held
        video += tally.video + (tally.hybrid if policy.hybrid_counts_as_video else 0)
        scheduled += tally.scheduled
        weighted += policy.target * (tally.held + tally.scheduled)
        targets.append(policy.target)

    sessions = held + scheduled
    if sessions:
        target: Fraction | None = weighted / sessions
    elif targets:
        target = sum(targets, Fraction(0)) / len(targets)
    else:
        target = None

    required = math.ceil(weighted)
    needed = max(0, required - video)
    video_needed = needed if needed <= scheduled else None

    if sessions == 0:
        status = ShareStatus.NO_DATA
    elif held == 0:
        status = ShareStatus.AT_RISK
    elif video_needed is None:
        status = ShareStatus.BELOW
    elif video_needed == 0:
        status = ShareStatus.ON_TRACK
    else:
        status = ShareStatus.AT_RISK

    return Share(
        held=held,
        video=video,
        scheduled=scheduled,
        share=_rounded(Fraction(video, held)) if held else None,
        target=None if target is None else _rounded(target),
        required=required,
        video_needed=video_needed,
        status=status,
    )
