"""Unit tests for the video-meeting compliance rules (controlplane.compliance.domain)."""

from __future__ import annotations

import dataclasses
from datetime import date
from fractions import Fraction

import pytest

from controlplane.compliance.domain import (
    Cadence,
    Evidence,
    Mode,
    Period,
    PeriodError,
    Policy,
    PolicySegment,
    SegmentTally,
    SessionStatus,
    Share,
    ShareStatus,
    Tally,
    counts_as_video,
    evaluate,
    is_designated,
    parse_period,
    policy_in_force,
    policy_segments,
)

# The real rule: 30% of 135 designated meetings until the end of 2013, 50% of ~200 since 2014.
POLICY_2013 = Policy(date(2010, 1, 1), date(2013, 12, 31), 135, 30, hybrid_counts_as_video=False)
POLICY_2014 = Policy(date(2014, 1, 1), None, 200, 50, hybrid_counts_as_video=True)
NATIONAL = [POLICY_2013, POLICY_2014]

# A hypothetical mid-year change: 30% (hybrid not counted) until 30 June, 50% (hybrid counted) from 1 July.
H1_2014 = Policy(date(2014, 1, 1), date(2014, 6, 30), 200, 30, hybrid_counts_as_video=False)
H2_2014 = Policy(date(2014, 7, 1), None, 200, 50, hybrid_counts_as_video=True)
MID_YEAR = [H1_2014, H2_2014]

# Same 50% target as POLICY_2014, but hybrid sessions do not count as video.
STRICT_2014 = dataclasses.replace(POLICY_2014, hybrid_counts_as_video=False)


Session = tuple[date, Mode, SessionStatus]


def tally_parts(
    sessions: list[Session],
    policies: list[Policy],
    period: Period,
    designated_from: date = date(2000, 1, 1),
    designated_until: date | None = None,
) -> list[SegmentTally]:
    """What a caller does: one tally per policy segment, only designated days, no cancelled sessions."""
    parts = []
    for segment in policy_segments(policies, period):
        tally = Tally()
        for day, mode, status in sessions:
            if not segment.start <= day < segment.end:
                continue
            if not is_designated(designated_from, designated_until, day):
                continue
            if status is SessionStatus.CANCELLED:
                continue
            if status is SessionStatus.SCHEDULED:
                tally += Tally(scheduled=1)
            else:
                tally += Tally(**{mode.value: 1})
        parts.append(SegmentTally(segment.policy, tally))
    return parts


# ------------------------------------------------------------------------------ enums


def test_enum_values_are_the_stored_strings() -> None:
    assert [m.value for m in Mode] == ["video", "in_person", "hybrid"]
    assert [s.value for s in SessionStatus] == ["held", "scheduled", "cancelled"]
    assert [e.value for e in Evidence] == ["manual", "bridge"]
    assert [c.value for c in Cadence] == [
        "weekly",
        "biweekly",
        "monthly",
        "quarterly",
        "semiannual",
        "annual",
        "ad_hoc",
    ]
    assert [s.value for s in ShareStatus] == ["on_track", "at_risk", "below", "no_data"]
    assert Mode("hybrid") is Mode.HYBRID
    assert Mode.IN_PERSON == "in_person"


# ---------------------------------------------------------------------------- periods


def test_parse_year() -> None:
    period = parse_period("2014")
    assert period == Period("year", date(2014, 1, 1), date(2015, 1, 1))
    assert period.label == "2014"


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2014-Q1", date(2014, 1, 1), date(2014, 4, 1)),
        ("2014-Q2", date(2014, 4, 1), date(2014, 7, 1)),
        ("2014-Q3", date(2014, 7, 1), date(2014, 10, 1)),
        ("2014-Q4", date(2014, 10, 1), date(2015, 1, 1)),
    ],
)
def test_parse_quarter(text: str, start: date, end: date) -> None:
    period = parse_period(text)
    assert (period.kind, period.start, period.end) == ("quarter", start, end)
    assert period.label == text


@pytest.mark.parametrize("text", ["2014-q1", "2014-q2", "2014-q3", "2014-q4"])
def test_parse_quarter_accepts_lowercase_q(text: str) -> None:
    period = parse_period(text)
    assert period == parse_period(text.upper())
    assert period.label == text.upper()


@pytest.mark.parametrize(
    ("text", "start", "end"),
    [
        ("2014-01", date(2014, 1, 1), date(2014, 2, 1)),
        ("2014-02", date(2014, 2, 1), date(2014, 3, 1)),
        ("2014-03", date(2014, 3, 1), date(2014, 4, 1)),
        ("2016-02", date(2016, 2, 1), date(2016, 3, 1)),
        ("2014-12", date(2014, 12, 1), date(2015, 1, 1)),
    ],
)
def test_parse_month(text: str, start: date, end: date) -> None:
    period = parse_period(text)
    assert (period.kind, period.start, period.end) == ("month", start, end)
    assert period.label == text


@pytest.mark.parametrize("text", ["1990", "2100", "1990-Q1", "2100-Q4", "1990-01", "2100-12"])
def test_parse_period_accepts_year_bounds(text: str) -> None:
    assert parse_period(text).label == text.upper()


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "14",
        "201",
        "20140",
        "1989",
        "2101",
        "0000",
        "9999",
        "1989-Q4",
        "2101-01",
        "abcd",
        "2014-",
        "2014-Q",
        "2014-Q0",
        "2014-Q5",
        "2014-Q12",
        "2014Q1",
        "2014 Q1",
        "Q1-2014",
        "2014-Q1-01",
        "2014-00",
        "2014-13",
        "2014-1",
        "2014-001",
        "2014-03-01",
        "2014/03",
        "201403",
        "2014-W10",
        "2014-H1",
        "2014-M03",
        " 2014",
        "2014 ",
        "2014\n",
        "２０１４",  # full-width digits
        "2014-０３",
    ],
)
def test_parse_period_rejects_malformed_text(text: str) -> None:
    with pytest.raises(PeriodError) as excinfo:
        parse_period(text)
    message = str(excinfo.value)
    assert message.startswith("period must be YYYY, YYYY-Qn or YYYY-MM")
    assert f"(got {text!r})" in message


def test_period_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="2014-13"):
        parse_period("2014-13")


def test_period_contains_start_but_not_end() -> None:
    q2 = parse_period("2014-Q2")
    assert not q2.contains(date(2014, 3, 31))
    assert q2.contains(date(2014, 4, 1))
    assert q2.contains(date(2014, 6, 30))
    assert not q2.contains(date(2014, 7, 1))


def test_period_contains_leap_day() -> None:
    assert parse_period("2016-02").contains(date(2016, 2, 29))
    assert parse_period("2016").contains(date(2016, 12, 31))
    assert not parse_period("2016").contains(date(2017, 1, 1))


def test_period_rejects_unknown_kind_and_empty_range() -> None:
    with pytest.raises(PeriodError):
        Period("week", date(2014, 1, 1), date(2014, 1, 8))
    with pytest.raises(PeriodError):
        Period("month", date(2014, 2, 1), date(2014, 2, 1))


def test_period_is_frozen() -> None:
    period = parse_period("2014")
    with pytest.raises(dataclasses.FrozenInstanceError):
        period.kind = "month"  # type: ignore[misc]


# --------------------------------------------------------------------------- policies


def test_policy_target_is_exact_fraction() -> None:
    assert POLICY_2013.target == Fraction(3, 10)
    assert POLICY_2014.target == Fraction(1, 2)


def test_policy_in_force_on_is_inclusive_and_open_ended() -> None:
    assert not POLICY_2013.in_force_on(date(2009, 12, 31))
    assert POLICY_2013.in_force_on(date(2010, 1, 1))
    assert POLICY_2013.in_force_on(date(2013, 12, 31))
    assert not POLICY_2013.in_force_on(date(2014, 1, 1))
    assert not POLICY_2014.in_force_on(date(2013, 12, 31))
    assert POLICY_2014.in_force_on(date(2014, 1, 1))
    assert POLICY_2014.in_force_on(date(2099, 12, 31))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"effective_from": date(2014, 1, 1), "effective_until": date(2013, 12, 31)},
        {"target_percent": 101},
        {"target_percent": -1},
        {"designated_meetings": -1},
    ],
)
def test_policy_rejects_impossible_values(kwargs: dict[str, object]) -> None:
    fields: dict[str, object] = {
        "effective_from": date(2014, 1, 1),
        "effective_until": None,
        "designated_meetings": 200,
        "target_percent": 50,
        "hybrid_counts_as_video": True,
    }
    with pytest.raises(ValueError):
        Policy(**{**fields, **kwargs})  # type: ignore[arg-type]


def test_single_day_policy_is_valid() -> None:
    day = date(2014, 1, 1)
    policy = Policy(day, day, 200, 50, hybrid_counts_as_video=True)
    assert policy.in_force_on(day)
    assert not policy.in_force_on(date(2014, 1, 2))


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2009, 12, 31), None),
        (date(2010, 1, 1), POLICY_2013),
        (date(2013, 12, 31), POLICY_2013),
        (date(2014, 1, 1), POLICY_2014),
        (date(2030, 6, 15), POLICY_2014),
    ],
)
def test_policy_in_force_across_2013_2014_boundary(day: date, expected: Policy | None) -> None:
    assert policy_in_force(NATIONAL, day) == expected
    assert policy_in_force(reversed(NATIONAL), day) == expected


def test_policy_in_force_with_no_policies() -> None:
    assert policy_in_force([], date(2014, 1, 1)) is None


def test_policy_in_force_rejects_overlap() -> None:
    overlapping = Policy(date(2013, 7, 1), None, 200, 50, hybrid_counts_as_video=True)
    with pytest.raises(ValueError, match="overlap"):
        policy_in_force([POLICY_2013, overlapping], date(2014, 1, 1))


@pytest.mark.parametrize(
    ("text", "policy", "start", "end"),
    [
        ("2013", POLICY_2013, date(2013, 1, 1), date(2014, 1, 1)),
        ("2014", POLICY_2014, date(2014, 1, 1), date(2015, 1, 1)),
        ("2015", POLICY_2014, date(2015, 1, 1), date(2016, 1, 1)),
        ("2013-Q4", POLICY_2013, date(2013, 10, 1), date(2014, 1, 1)),
        ("2014-01", POLICY_2014, date(2014, 1, 1), date(2014, 2, 1)),
    ],
)
def test_policy_segments_period_under_one_policy(text: str, policy: Policy, start: date, end: date) -> None:
    assert policy_segments(NATIONAL, parse_period(text)) == [PolicySegment(policy, start, end)]


def test_policy_segments_target_change_mid_year() -> None:
    expected = [
        PolicySegment(H1_2014, date(2014, 1, 1), date(2014, 7, 1)),
        PolicySegment(H2_2014, date(2014, 7, 1), date(2015, 1, 1)),
    ]
    assert policy_segments(MID_YEAR, parse_period("2014")) == expected
    assert policy_segments(list(reversed(MID_YEAR)), parse_period("2014")) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014-Q2", [PolicySegment(H1_2014, date(2014, 4, 1), date(2014, 7, 1))]),
        ("2014-06", [PolicySegment(H1_2014, date(2014, 6, 1), date(2014, 7, 1))]),
        ("2014-Q3", [PolicySegment(H2_2014, date(2014, 7, 1), date(2014, 10, 1))]),
        ("2014-07", [PolicySegment(H2_2014, date(2014, 7, 1), date(2014, 8, 1))]),
        ("2013", []),
    ],
)
def test_policy_segments_sub_periods_of_mid_year_change(text: str, expected: list[PolicySegment]) -> None:
    assert policy_segments(MID_YEAR, parse_period(text)) == expected


def test_policy_segments_leave_out_a_gap() -> None:
    until_march = Policy(date(2013, 1, 1), date(2014, 3, 31), 135, 30, hybrid_counts_as_video=False)
    from_may = Policy(date(2014, 5, 1), None, 200, 50, hybrid_counts_as_video=True)
    policies = [from_may, until_march]
    assert policy_segments(policies, parse_period("2014")) == [
        PolicySegment(until_march, date(2014, 1, 1), date(2014, 4, 1)),
        PolicySegment(from_may, date(2014, 5, 1), date(2015, 1, 1)),
    ]
    assert policy_segments(policies, parse_period("2014-04")) == []
    assert policy_segments(policies, parse_period("2014-Q2")) == [
        PolicySegment(from_may, date(2014, 5, 1), date(2014, 7, 1)),
    ]


def test_policy_segments_without_policies_or_before_any() -> None:
    assert policy_segments([], parse_period("2014")) == []
    assert policy_segments(NATIONAL, parse_period("2009")) == []


def test_policy_segments_policy_ending_inside_period_with_nothing_after() -> None:
    assert policy_segments([POLICY_2013], parse_period("2013-12")) == [
        PolicySegment(POLICY_2013, date(2013, 12, 1), date(2014, 1, 1)),
    ]
    assert policy_segments([POLICY_2013], parse_period("2014")) == []


@pytest.mark.parametrize(
    "second",
    [
        # open-ended earlier policy overlaps anything after it
        Policy(date(2020, 1, 1), None, 200, 60, hybrid_counts_as_video=True),
        # one shared day: 2013-12-31 is POLICY_2013's last day
        Policy(date(2013, 12, 31), None, 200, 50, hybrid_counts_as_video=True),
        # contained in POLICY_2013
        Policy(date(2012, 1, 1), date(2012, 12, 31), 135, 30, hybrid_counts_as_video=True),
        # same start
        Policy(date(2010, 1, 1), date(2010, 12, 31), 135, 30, hybrid_counts_as_video=True),
    ],
)
def test_policy_segments_reject_overlapping_policies(second: Policy) -> None:
    with pytest.raises(ValueError, match="must not overlap"):
        policy_segments([*NATIONAL, second], parse_period("2014"))


def test_adjacent_policies_do_not_overlap() -> None:
    assert len(policy_segments(NATIONAL, Period("year", date(2013, 7, 1), date(2014, 7, 1)))) == 2


# ----------------------------------------------------------- designation and counting


@pytest.mark.parametrize(
    ("designated_from", "designated_until", "day", "expected"),
    [
        (date(2014, 4, 1), None, date(2014, 3, 31), False),
        (date(2014, 4, 1), None, date(2014, 4, 1), True),
        (date(2014, 4, 1), None, date(2040, 1, 1), True),
        (date(2014, 4, 1), date(2014, 9, 30), date(2014, 6, 15), True),
        (date(2014, 4, 1), date(2014, 9, 30), date(2014, 9, 30), True),
        (date(2014, 4, 1), date(2014, 9, 30), date(2014, 10, 1), False),
        (date(2014, 4, 1), date(2014, 4, 1), date(2014, 4, 1), True),
    ],
)
def test_is_designated_inclusive_both_ends(
    designated_from: date, designated_until: date | None, day: date, expected: bool
) -> None:
    assert is_designated(designated_from, designated_until, day) is expected


@pytest.mark.parametrize(
    ("mode", "policy", "expected"),
    [
        (Mode.VIDEO, POLICY_2014, True),
        (Mode.VIDEO, STRICT_2014, True),
        (Mode.HYBRID, POLICY_2014, True),
        (Mode.HYBRID, STRICT_2014, False),
        (Mode.IN_PERSON, POLICY_2014, False),
        (Mode.IN_PERSON, STRICT_2014, False),
    ],
)
def test_counts_as_video(mode: Mode, policy: Policy, expected: bool) -> None:
    assert counts_as_video(mode, policy) is expected


# ----------------------------------------------------------------------------- tallies


def test_tally_defaults_to_zero() -> None:
    assert Tally() == Tally(0, 0, 0, 0)
    assert Tally().held == 0


def test_tally_held_excludes_scheduled() -> None:
    assert Tally(video=3, in_person=2, hybrid=1, scheduled=4).held == 6


def test_tally_addition() -> None:
    total = Tally(video=3, in_person=2, hybrid=1, scheduled=4) + Tally(video=1, in_person=5, scheduled=2)
    assert total == Tally(video=4, in_person=7, hybrid=1, scheduled=6)
    assert total.held == 12
    assert sum([Tally(video=1), Tally(hybrid=2), Tally(scheduled=3)], Tally()) == Tally(1, 0, 2, 3)
    assert Tally(video=2) + Tally() == Tally(video=2)


def test_tally_rejects_negative_counts() -> None:
    with pytest.raises(ValueError):
        Tally(video=-1)


# ---------------------------------------------------------------------------- evaluate


def one(policy: Policy, **counts: int) -> Share:
    return evaluate([SegmentTally(policy, Tally(**counts))])


def test_evaluate_no_parts() -> None:
    assert evaluate([]) == Share(
        held=0,
        video=0,
        scheduled=0,
        share=None,
        target=None,
        required=0,
        video_needed=0,
        status=ShareStatus.NO_DATA,
    )


def test_evaluate_no_sessions_uses_plain_mean_target() -> None:
    result = evaluate([SegmentTally(H1_2014, Tally()), SegmentTally(H2_2014, Tally())])
    assert result.status is ShareStatus.NO_DATA
    assert result.share is None
    assert result.target == 0.4
    assert (result.held, result.video, result.scheduled, result.required) == (0, 0, 0, 0)


def test_evaluate_cancelled_only_is_no_data() -> None:
    sessions = [(date(2014, 3, 5), Mode.VIDEO, SessionStatus.CANCELLED)]
    result = evaluate(tally_parts(sessions, NATIONAL, parse_period("2014")))
    assert result.status is ShareStatus.NO_DATA
    assert result.target == 0.5


def test_evaluate_all_hybrid_counting_as_video() -> None:
    result = one(POLICY_2014, hybrid=4)
    assert (result.held, result.video, result.share) == (4, 4, 1.0)
    assert (result.required, result.video_needed) == (2, 0)
    assert result.status is ShareStatus.ON_TRACK


def test_evaluate_all_hybrid_not_counting_nothing_scheduled() -> None:
    result = one(STRICT_2014, hybrid=4)
    assert (result.held, result.video, result.share) == (4, 0, 0.0)
    assert result.required == 2
    assert result.video_needed is None
    assert result.status is ShareStatus.BELOW


def test_evaluate_exactly_at_target() -> None:
    result = one(POLICY_2014, video=2, in_person=2)
    assert result == Share(
        held=4,
        video=2,
        scheduled=0,
        share=0.5,
        target=0.5,
        required=2,
        video_needed=0,
        status=ShareStatus.ON_TRACK,
    )


@pytest.mark.parametrize(
    ("counts", "required", "video_needed", "status"),
    [
        ({"video": 2, "in_person": 1}, 2, 0, ShareStatus.ON_TRACK),
        ({"video": 1, "in_person": 2}, 2, None, ShareStatus.BELOW),
        ({"video": 1, "in_person": 1, "scheduled": 1}, 2, 1, ShareStatus.AT_RISK),
        ({"video": 0, "in_person": 1, "scheduled": 2}, 2, 2, ShareStatus.AT_RISK),
        ({"video": 1}, 1, 0, ShareStatus.ON_TRACK),
        ({"in_person": 1}, 1, None, ShareStatus.BELOW),
    ],
)
def test_evaluate_odd_counts_round_up(
    counts: dict[str, int], required: int, video_needed: int | None, status: ShareStatus
) -> None:
    result = one(POLICY_2014, **counts)
    assert (result.required, result.video_needed, result.status) == (required, video_needed, status)


@pytest.mark.parametrize(
    ("sessions", "required"),
    [(10, 3), (3, 1), (7, 3), (135, 41), (200, 60)],
)
def test_evaluate_thirty_percent_required_is_exact(sessions: int, required: int) -> None:
    assert one(POLICY_2013, in_person=sessions).required == required


def test_evaluate_share_rounded_to_four_places() -> None:
    result = one(POLICY_2014, video=2, in_person=1)
    assert result.share == 0.6667
    assert one(POLICY_2014, video=1, in_person=2).share == 0.3333


def test_evaluate_target_change_mid_year() -> None:
    parts = [
        # Jan-Jun under 30%, hybrid not counted: 3 of 12 count as video.
        SegmentTally(H1_2014, Tally(video=3, in_person=6, hybrid=3)),
        # Jul-Dec under 50%, hybrid counted: 4 of 6 held count, 2 still scheduled.
        SegmentTally(H2_2014, Tally(video=2, in_person=2, hybrid=2, scheduled=2)),
    ]
    result = evaluate(parts)
    assert result.held == 18
    assert result.video == 7
    assert result.scheduled == 2
    assert result.share == 0.3889  # 7 / 18
    # weighted target: (0.3 * 12 + 0.5 * 8) / 20 = 7.6 / 20 = 0.38
    assert result.target == 0.38
    assert result.required == 8  # ceil(7.6)
    assert result.video_needed == 1
    assert result.status is ShareStatus.AT_RISK


def test_evaluate_mid_year_change_differs_from_judging_by_year_end_rule() -> None:
    h1, h2 = Tally(video=3, in_person=6, hybrid=3), Tally(video=2, in_person=2, hybrid=2, scheduled=2)
    by_date = evaluate([SegmentTally(H1_2014, h1), SegmentTally(H2_2014, h2)])
    by_year_end = evaluate([SegmentTally(H2_2014, h1 + h2)])
    assert (by_date.video, by_date.required) == (7, 8)
    assert (by_year_end.video, by_year_end.required) == (10, 10)


def test_evaluate_mid_year_change_from_sessions() -> None:
    held, scheduled = SessionStatus.HELD, SessionStatus.SCHEDULED
    sessions: list[Session] = [
        (date(2014, 2, 10), Mode.VIDEO, held),
        (date(2014, 4, 14), Mode.HYBRID, held),  # H1: hybrid does not count
        (date(2014, 6, 30), Mode.IN_PERSON, held),  # last day of the 30% rule
        (date(2014, 7, 1), Mode.HYBRID, held),  # first day of the 50% rule: counts
        (date(2014, 9, 8), Mode.IN_PERSON, held),
        (date(2014, 10, 13), Mode.VIDEO, SessionStatus.CANCELLED),
        (date(2014, 11, 10), Mode.VIDEO, scheduled),
        (date(2014, 12, 8), Mode.VIDEO, scheduled),
    ]
    parts = tally_parts(sessions, MID_YEAR, parse_period("2014"))
    assert parts == [
        SegmentTally(H1_2014, Tally(video=1, in_person=1, hybrid=1)),
        SegmentTally(H2_2014, Tally(in_person=1, hybrid=1, scheduled=2)),
    ]
    result = evaluate(parts)
    assert (result.held, result.video, result.scheduled) == (5, 2, 2)
    assert result.target == 0.4143  # (0.3 * 3 + 0.5 * 4) / 7 = 2.9 / 7
    assert result.required == 3  # ceil(2.9)
    assert result.video_needed == 1
    assert result.status is ShareStatus.AT_RISK


def test_evaluate_forecast_reachable() -> None:
    result = one(POLICY_2014, video=3, in_person=5, scheduled=6)
    assert result.share == 0.375
    assert result.required == 7  # 50% of 14
    assert result.video_needed == 4
    assert result.status is ShareStatus.AT_RISK


def test_evaluate_forecast_reachable_only_if_every_scheduled_session_is_video() -> None:
    result = one(POLICY_2014, video=1, in_person=5, scheduled=4)
    assert (result.required, result.video_needed, result.status) == (5, 4, ShareStatus.AT_RISK)


def test_evaluate_forecast_unreachable() -> None:
    result = one(POLICY_2014, video=1, in_person=7, scheduled=2)
    assert result.required == 5
    assert result.video_needed is None
    assert result.status is ShareStatus.BELOW


def test_evaluate_ahead_with_enough_video_already() -> None:
    result = one(POLICY_2014, video=6, scheduled=4)
    assert (result.required, result.video_needed, result.status) == (5, 0, ShareStatus.ON_TRACK)


def test_evaluate_good_share_so_far_but_more_video_still_needed() -> None:
    result = one(POLICY_2014, video=2, scheduled=10)
    assert result.share == 1.0
    assert (result.required, result.video_needed, result.status) == (6, 4, ShareStatus.AT_RISK)


def test_evaluate_only_scheduled_sessions() -> None:
    result = one(POLICY_2014, scheduled=5)
    assert result == Share(
        held=0,
        video=0,
        scheduled=5,
        share=None,
        target=0.5,
        required=3,
        video_needed=3,
        status=ShareStatus.AT_RISK,
    )


def test_evaluate_zero_target_is_on_track_once_held() -> None:
    no_target = Policy(date(2000, 1, 1), None, 200, 0, hybrid_counts_as_video=False)
    assert one(no_target, in_person=3).status is ShareStatus.ON_TRACK
    assert one(no_target, scheduled=3).status is ShareStatus.AT_RISK


def test_evaluate_parts_sharing_a_policy_just_sum() -> None:
    meetings = [
        Tally(video=5, in_person=3, hybrid=2),
        Tally(video=1, in_person=4, scheduled=3),
        Tally(hybrid=2, scheduled=1),
    ]
    per_meeting = evaluate(SegmentTally(POLICY_2014, t) for t in meetings)
    summed = evaluate([SegmentTally(POLICY_2014, sum(meetings, Tally()))])
    assert per_meeting == summed
    assert (per_meeting.held, per_meeting.video, per_meeting.scheduled) == (17, 10, 4)
    assert (per_meeting.required, per_meeting.video_needed) == (11, 1)
    assert per_meeting.status is ShareStatus.AT_RISK


def test_evaluate_meeting_designated_mid_period() -> None:
    sessions: list[Session] = [
        (date(2014, 3, 31), Mode.IN_PERSON, SessionStatus.HELD),  # before designation: ignored
        (date(2014, 4, 1), Mode.VIDEO, SessionStatus.HELD),  # first designated day
        (date(2014, 5, 12), Mode.IN_PERSON, SessionStatus.HELD),
        (date(2014, 6, 9), Mode.HYBRID, SessionStatus.HELD),
        (date(2014, 7, 14), Mode.VIDEO, SessionStatus.CANCELLED),
        (date(2014, 9, 30), Mode.IN_PERSON, SessionStatus.SCHEDULED),  # last designated day
        (date(2014, 10, 1), Mode.IN_PERSON, SessionStatus.HELD),  # after de-designation: ignored
    ]
    parts = tally_parts(
        sessions,
        NATIONAL,
        parse_period("2014"),
        designated_from=date(2014, 4, 1),
        designated_until=date(2014, 9, 30),
    )
    assert parts == [SegmentTally(POLICY_2014, Tally(video=1, in_person=1, hybrid=1, scheduled=1))]
    result = evaluate(parts)
    assert (result.held, result.video, result.scheduled) == (3, 2, 1)
    assert (result.required, result.video_needed, result.status) == (2, 0, ShareStatus.ON_TRACK)

    first_quarter = tally_parts(sessions, NATIONAL, parse_period("2014-Q1"), designated_from=date(2014, 4, 1))
    assert evaluate(first_quarter).status is ShareStatus.NO_DATA
