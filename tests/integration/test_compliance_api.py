"""The compliance register over HTTP: meetings, policies, sessions and the video shares they add up to."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from conftest import error_body

API = "/api/v1/compliance"


@pytest.fixture
def admin(client, catalogue, login):
    return login("admin1", "admin")


def _record(client, headers, meeting, day, mode, status="held", note=""):
    response = client.post(f"{API}/sessions", headers=headers,
                           json={"meeting": meeting, "held_on": day, "mode": mode, "status": status, "note": note})
    assert response.status_code == 201, response.text
    return response.json()


def _shares(client, headers, period, **params):
    response = client.get(f"{API}/shares", headers=headers, params={"period": period, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _numbers(share: dict) -> tuple:
    return (share["held"], share["video"], share["scheduled"], share["share"], share["target"], share["required"],
            share["video_needed"], share["forecast"], share["status"])


# 2014 (50%, hybrid counts). Today is 2014-07-01 in Seoul: later sessions can only be scheduled.
SESSIONS_2014 = [
    ("MOIS-LOCAL", "2014-01-15", "video", "held"),
    ("MOIS-LOCAL", "2014-02-15", "video", "held"),
    ("MOIS-LOCAL", "2014-03-15", "in_person", "held"),
    ("MOIS-LOCAL", "2014-08-15", "video", "scheduled"),
    ("MOIS-SAFETY", "2014-04-10", "video", "held"),
    ("MOIS-SAFETY", "2014-05-10", "hybrid", "held"),
    ("MOIS-SAFETY", "2014-09-10", "in_person", "scheduled"),
    ("MOEF-ECON", "2014-01-20", "video", "held"),
    ("MOEF-ECON", "2014-02-20", "in_person", "held"),
    ("MOEF-ECON", "2014-03-20", "in_person", "held"),
    ("MOEF-ECON", "2014-04-20", "in_person", "held"),
    ("MOEF-ECON", "2014-05-20", "in_person", "held"),
    ("MOEF-ECON", "2014-06-20", "in_person", "held"),
    ("MOEF-ECON", "2014-10-20", "video", "scheduled"),
    ("MSIT-ICT", "2014-03-05", "hybrid", "held"),
    ("MSIT-ICT", "2014-04-05", "video", "cancelled"),
]
# 2013 (30%, hybrid does NOT count).
SESSIONS_2013 = [
    ("MOEF-ECON", "2013-03-10", "video", "held"),
    ("MOEF-ECON", "2013-06-10", "hybrid", "held"),
    ("MOEF-ECON", "2013-09-10", "in_person", "held"),
    ("MOEF-ECON", "2013-11-10", "in_person", "held"),
    ("MOIS-LOCAL", "2013-05-05", "hybrid", "held"),
    ("MOIS-LOCAL", "2013-07-07", "video", "held"),
    ("MOIS-LOCAL", "2013-10-10", "video", "held"),
]


@pytest.fixture
def register(client, admin):
    for meeting, day, mode, status in SESSIONS_2014 + SESSIONS_2013:
        _record(client, admin, meeting, day, mode, status)
    return admin


# --- meetings -----------------------------------------------------------------------------------

def test_meetings_crud(client, admin):
    created = client.post(f"{API}/meetings", headers=admin, json={
        "code": "MSIT-DATA", "name_ko": "데이터 협의회", "name_en": "Data council", "host": "MSIT",
        "participants": ["MOIS", "MOEF"], "cadence": "quarterly", "designated_from": "2014-01-01"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["host"] == "MSIT"
    assert body["participants"] == ["MOEF", "MOIS"]
    assert body["designated_until"] is None and body["active"] is True

    error_body(client.post(f"{API}/meetings", headers=admin, json={
        "code": "MSIT-DATA", "name_ko": "x", "name_en": "x", "host": "MSIT", "cadence": "monthly",
        "designated_from": "2014-01-01"}), 409, field="code")

    patched = client.patch(f"{API}/meetings/MSIT-DATA", headers=admin,
                           json={"participants": ["MOIS"], "designated_until": "2015-12-31", "cadence": "monthly"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["participants"] == ["MOIS"]
    assert patched.json()["designated_until"] == "2015-12-31"
    assert patched.json()["cadence"] == "monthly"

    got = client.get(f"{API}/meetings/MSIT-DATA", headers=admin).json()
    assert got == patched.json()
    by_host = client.get(f"{API}/meetings", headers=admin, params={"ministry": "MSIT"}).json()
    assert [m["code"] for m in by_host] == ["MSIT-DATA", "MSIT-ICT"]
    assert [m["code"] for m in client.get(f"{API}/meetings", headers=admin, params={"q": "data"}).json()] \
        == ["MSIT-DATA"]
    error_body(client.get(f"{API}/meetings/NO-SUCH", headers=admin), 404)
    error_body(client.patch(f"{API}/meetings/NO-SUCH", headers=admin, json={"active": False}), 404)


@pytest.mark.parametrize("participants,reason", [
    (["MOIS", "NOPE"], "NOPE"),
    (["MSIT", "MOIS"], "host"),
])
def test_meeting_participants_are_validated(client, admin, participants, reason):
    body = error_body(client.post(f"{API}/meetings", headers=admin, json={
        "code": "MSIT-BAD", "name_ko": "x", "name_en": "x", "host": "MSIT", "participants": participants,
        "cadence": "monthly", "designated_from": "2014-01-01"}), 422, field="participants")
    assert reason in body["message"]
    error_body(client.get(f"{API}/meetings/MSIT-BAD", headers=admin), 404)
    error_body(client.patch(f"{API}/meetings/MOIS-LOCAL", headers=admin, json={"participants": ["MOIS"]}), 422,
               field="participants")
    error_body(client.patch(f"{API}/meetings/MOIS-LOCAL", headers=admin, json={"participants": ["ZZZ"]}), 422,
               field="participants")


def test_moving_a_meeting_to_a_participant_host_is_refused(client, admin):
    # MOIS-LOCAL: host MOIS, participants MOEF and MSIT. Making MOEF the host would list it twice.
    error_body(client.patch(f"{API}/meetings/MOIS-LOCAL", headers=admin, json={"host": "MOEF"}), 422)
    got = client.get(f"{API}/meetings/MOIS-LOCAL", headers=admin).json()
    assert got["host"] == "MOIS"
    assert got["host"] not in got["participants"]


def test_meeting_designation_window_is_validated(client, admin):
    body = error_body(client.post(f"{API}/meetings", headers=admin, json={
        "code": "MSIT-WIN", "name_ko": "x", "name_en": "x", "host": "MSIT", "cadence": "monthly",
        "designated_from": "2014-06-01", "designated_until": "2014-05-31"}), 422)
    assert "designated_until" in body["message"]
    # MOIS-LOCAL is designated from 2011-01-01: an end before that is refused, and nothing changes.
    error_body(client.patch(f"{API}/meetings/MOIS-LOCAL", headers=admin, json={"designated_until": "2010-12-31"}), 422,
               field="designated_until")
    error_body(client.patch(f"{API}/meetings/MOIS-LOCAL", headers=admin, json={"designated_from": "2020-01-01",
                                                                                "designated_until": "2019-01-01"}), 422)
    assert client.get(f"{API}/meetings/MOIS-LOCAL", headers=admin).json()["designated_until"] is None
    error_body(client.patch(f"{API}/meetings/MOIS-LOCAL", headers=admin, json={"designated_from": None}), 422,
               field="designated_from")


def test_meeting_with_unknown_host_is_refused(client, admin):
    response = client.post(f"{API}/meetings", headers=admin, json={
        "code": "NOPE-X", "name_ko": "x", "name_en": "x", "host": "NOPE", "cadence": "monthly",
        "designated_from": "2014-01-01"})
    assert response.status_code in (404, 422), response.text
    assert response.json()["field"] == "host"


# --- policies -----------------------------------------------------------------------------------

def test_policies_list_create_overlap_and_end(client, admin):
    policies = client.get(f"{API}/policies", headers=admin).json()
    assert [(p["effective_from"], p["effective_until"], p["target_percent"], p["hybrid_counts_as_video"])
            for p in policies] == [("2011-01-01", "2013-12-31", 30, False), ("2014-01-01", None, 50, True)]

    overlapping = {"effective_from": "2015-01-01", "designated_meetings": 210, "target_percent": 60,
                   "hybrid_counts_as_video": True}
    error_body(client.post(f"{API}/policies", headers=admin, json=overlapping), 409, code="conflict")

    current = policies[1]["id"]
    error_body(client.patch(f"{API}/policies/{current}", headers=admin, json={"effective_until": "2013-06-30"}), 422,
               field="effective_until")
    error_body(client.patch(f"{API}/policies/9999", headers=admin, json={"effective_until": "2014-12-31"}), 404)
    ended = client.patch(f"{API}/policies/{current}", headers=admin, json={"effective_until": "2014-12-31"})
    assert ended.status_code == 200 and ended.json()["effective_until"] == "2014-12-31"

    created = client.post(f"{API}/policies", headers=admin, json=overlapping)
    assert created.status_code == 201, created.text
    assert created.json()["target_percent"] == 60
    error_body(client.post(f"{API}/policies", headers=admin, json={
        "effective_from": "2016-01-01", "effective_until": "2015-01-01", "designated_meetings": 1,
        "target_percent": 50}), 422)
    error_body(client.post(f"{API}/policies", headers=admin, json={
        "effective_from": "2020-01-01", "designated_meetings": 1, "target_percent": 101}), 422,
        field="target_percent")
    assert len(client.get(f"{API}/policies", headers=admin).json()) == 3
    # The new policy governs 2015: its target is what the shares report.
    assert _shares(client, admin, "2015")["government"]["target"] == 0.6


def test_ending_a_policy_cannot_make_it_overlap_the_next(client, admin):
    first = client.get(f"{API}/policies", headers=admin).json()[0]
    # The 2011 policy runs until 2013-12-31; the 2014 one starts the next day.
    response = client.patch(f"{API}/policies/{first['id']}", headers=admin, json={"effective_until": "2014-06-30"})
    error_body(response, 409, field="effective_until")
    # The register must stay usable: the shares for 2014 are still computed.
    assert client.get(f"{API}/shares", headers=admin, params={"period": "2014"}).status_code == 200


# --- sessions -----------------------------------------------------------------------------------

def test_session_create_update_delete(client, admin):
    created = _record(client, admin, "MOIS-LOCAL", "2014-05-02", "in_person", note="청사 대회의실")
    assert created["meeting"] == "MOIS-LOCAL" and created["host"] == "MOIS"
    assert (created["mode"], created["status"], created["evidence"]) == ("in_person", "held", "manual")

    updated = client.patch(f"{API}/sessions/{created['id']}", headers=admin, json={"mode": "video"})
    assert updated.status_code == 200, updated.text
    assert updated.json()["mode"] == "video"
    listed = client.get(f"{API}/sessions", headers=admin, params={"meeting": "MOIS-LOCAL"}).json()
    assert [(s["id"], s["mode"]) for s in listed] == [(created["id"], "video")]

    assert client.delete(f"{API}/sessions/{created['id']}", headers=admin).status_code == 204
    assert client.get(f"{API}/sessions", headers=admin).json() == []
    error_body(client.delete(f"{API}/sessions/{created['id']}", headers=admin), 404)
    error_body(client.patch(f"{API}/sessions/{created['id']}", headers=admin, json={"mode": "video"}), 404)


def test_secretariat_records_sessions_for_any_meeting(client, catalogue, login):
    headers = login("sec1", "secretariat")
    assert _record(client, headers, "MOEF-ECON", "2014-02-03", "video")["host"] == "MOEF"
    assert _record(client, headers, "MSIT-ICT", "2014-04-03", "hybrid")["host"] == "MSIT"


def test_duplicate_session_same_meeting_and_day_is_a_conflict(client, admin):
    _record(client, admin, "MOEF-ECON", "2014-02-03", "video")
    error_body(client.post(f"{API}/sessions", headers=admin,
                           json={"meeting": "MOEF-ECON", "held_on": "2014-02-03", "mode": "in_person"}), 409,
               field="held_on")
    # Another meeting the same day is fine.
    _record(client, admin, "MOIS-LOCAL", "2014-02-03", "video")
    assert len(client.get(f"{API}/sessions", headers=admin).json()) == 2


def test_moving_a_session_onto_an_occupied_day_is_a_conflict(client, admin):
    _record(client, admin, "MOEF-ECON", "2014-02-03", "video")
    other = _record(client, admin, "MOEF-ECON", "2014-03-03", "in_person")
    response = client.patch(f"{API}/sessions/{other['id']}", headers=admin, json={"held_on": "2014-02-03"})
    error_body(response, 409, field="held_on")
    days = sorted(s["held_on"] for s in client.get(f"{API}/sessions", headers=admin).json())
    assert days == ["2014-02-03", "2014-03-03"]


def test_held_session_cannot_be_in_the_future(client, admin, clock):
    # Today is 2014-07-01 in Seoul.
    error_body(client.post(f"{API}/sessions", headers=admin,
                           json={"meeting": "MOEF-ECON", "held_on": "2014-07-02", "mode": "video"}), 422,
               field="held_on")
    assert _record(client, admin, "MOEF-ECON", "2014-07-01", "video")["status"] == "held"
    scheduled = _record(client, admin, "MOEF-ECON", "2014-07-02", "video", status="scheduled")
    # A scheduled session in the future cannot be marked held before its day.
    error_body(client.patch(f"{API}/sessions/{scheduled['id']}", headers=admin, json={"status": "held"}), 422,
               field="held_on")
    assert client.get(f"{API}/sessions", headers=admin, params={"from": "2014-07-02"}).json()[0]["status"] \
        == "scheduled"


def test_today_is_the_seoul_working_day(client, admin, clock):
    # 16:00 UTC on 30 June is already 1 July in Seoul: a session held on 1 July may be recorded.
    clock.at = datetime(2014, 6, 30, 16, 0, tzinfo=UTC)
    assert _record(client, admin, "MOEF-ECON", "2014-07-01", "video")["held_on"] == "2014-07-01"
    error_body(client.post(f"{API}/sessions", headers=admin,
                           json={"meeting": "MOIS-LOCAL", "held_on": "2014-07-02", "mode": "video"}), 422,
               field="held_on")


def test_session_outside_the_designation_window_is_refused(client, admin):
    # MSIT-ICT is designated from 2014-03-01.
    body = error_body(client.post(f"{API}/sessions", headers=admin,
                                  json={"meeting": "MSIT-ICT", "held_on": "2014-02-20", "mode": "video"}), 422,
                      field="held_on")
    assert "2014-03-01" in body["message"]
    assert _record(client, admin, "MSIT-ICT", "2014-03-01", "video")["held_on"] == "2014-03-01"
    assert len(client.get(f"{API}/sessions", headers=admin).json()) == 1


def test_session_validation(client, admin):
    unknown = client.post(f"{API}/sessions", headers=admin,
                          json={"meeting": "NOPE-MEETING", "held_on": "2014-02-20", "mode": "video"})
    assert unknown.status_code in (404, 422) and unknown.json()["field"] == "meeting", unknown.text
    error_body(client.post(f"{API}/sessions", headers=admin,
                           json={"meeting": "MOIS-LOCAL", "held_on": "2014-02-30", "mode": "video"}), 422,
               field="held_on")
    error_body(client.post(f"{API}/sessions", headers=admin,
                           json={"meeting": "MOIS-LOCAL", "held_on": "2014-02-20", "mode": "telepathy"}), 422,
               field="mode")
    created = _record(client, admin, "MOIS-LOCAL", "2014-02-20", "video")
    error_body(client.patch(f"{API}/sessions/{created['id']}", headers=admin, json={"mode": None}), 422, field="mode")
    error_body(client.patch(f"{API}/sessions/{created['id']}", headers=admin, json={"held_on": "2010-01-01"}), 422,
               field="held_on")
    assert client.get(f"{API}/sessions", headers=admin).json()[0]["held_on"] == "2014-02-20"


def test_session_list_filters(client, register):
    admin = register
    moef = client.get(f"{API}/sessions", headers=admin, params={"ministry": "MOEF", "from": "2014-01-01"}).json()
    assert len(moef) == 7 and {s["host"] for s in moef} == {"MOEF"}
    days = [s["held_on"] for s in moef]
    assert days == sorted(days, reverse=True)
    q2 = client.get(f"{API}/sessions", headers=admin, params={"from": "2014-04-01", "to": "2014-06-30"}).json()
    assert len(q2) == 6
    page = client.get(f"{API}/sessions", headers=admin, params={"limit": 5, "offset": 5}).json()
    assert len(page) == 5
    error_body(client.get(f"{API}/sessions", headers=admin, params={"ministry": "NOPE"}), 404)


# --- shares -------------------------------------------------------------------------------------

def test_shares_2014_government_and_per_ministry(client, register):
    report = _shares(client, register, "2014")
    assert (report["period"], report["start"], report["end"], report["scope"]) == \
        ("2014", "2014-01-01", "2014-12-31", "ministry")
    rows = {r["key"]: r for r in report["rows"]}
    assert list(rows) == ["MOEF", "MOIS", "MSIT"]
    # MOIS: 3 video + 1 in person + 1 hybrid held (hybrid counts in 2014), 2 scheduled.
    # share 4/5; required ceil(0.5 * 7) = 4; already 4 by video.
    assert _numbers(rows["MOIS"]) == (5, 4, 2, 0.8, 0.5, 4, 0, 0, "on_track")
    # MOEF: 1 video + 5 in person held, 1 scheduled: required ceil(3.5) = 4, needs 3 more but only 1 is scheduled.
    assert _numbers(rows["MOEF"]) == (6, 1, 1, 0.1667, 0.5, 4, None, "unreachable", "below")
    # MSIT: 1 hybrid held (counts); the cancelled session never counts.
    assert _numbers(rows["MSIT"]) == (1, 1, 0, 1.0, 0.5, 1, 0, 0, "on_track")
    # Government: 12 held, 6 counted as video, 3 scheduled: required ceil(7.5) = 8, 2 more needed of 3 scheduled.
    assert _numbers(report["government"]) == (12, 6, 3, 0.5, 0.5, 8, 2, 2, "at_risk")
    assert report["ministry"] is None
    assert rows["MOIS"]["host"] == "MOIS" and rows["MOIS"]["name_en"] == "Ministry of the Interior and Safety"


def test_shares_2013_apply_the_30_percent_rule_without_hybrid(client, register):
    report = _shares(client, register, "2013")
    rows = {r["key"]: r for r in report["rows"]}
    # MSIT-ICT was not designated in 2013: MSIT hosts nothing that year.
    assert list(rows) == ["MOEF", "MOIS"]
    # MOEF: video, hybrid (not counted), 2 in person: 1 of 4; required ceil(0.3 * 4) = 2; nothing scheduled.
    assert _numbers(rows["MOEF"]) == (4, 1, 0, 0.25, 0.3, 2, None, "unreachable", "below")
    # MOIS: hybrid (not counted) + 2 video: 2 of 3; required ceil(0.9) = 1.
    assert _numbers(rows["MOIS"]) == (3, 2, 0, 0.6667, 0.3, 1, 0, 0, "on_track")
    # Government: 3 of 7; required ceil(2.1) = 3.
    assert _numbers(report["government"]) == (7, 3, 0, 0.4286, 0.3, 3, 0, 0, "on_track")


def test_shares_for_a_quarter(client, register):
    report = _shares(client, register, "2014-Q2")
    assert (report["period"], report["start"], report["end"]) == ("2014-Q2", "2014-04-01", "2014-06-30")
    rows = {r["key"]: r for r in report["rows"]}
    # MOIS: video + hybrid held in Q2; required ceil(1.0) = 1.
    assert _numbers(rows["MOIS"]) == (2, 2, 0, 1.0, 0.5, 1, 0, 0, "on_track")
    # MOEF: 3 in person; required 2; nothing scheduled in Q2.
    assert _numbers(rows["MOEF"]) == (3, 0, 0, 0.0, 0.5, 2, None, "unreachable", "below")
    # MSIT: only a cancelled session in Q2.
    assert _numbers(rows["MSIT"]) == (0, 0, 0, None, 0.5, 0, 0, 0, "no_data")
    assert _numbers(report["government"]) == (5, 2, 0, 0.4, 0.5, 3, None, "unreachable", "below")


def test_shares_for_a_month(client, register):
    report = _shares(client, register, "2014-03")
    assert (report["start"], report["end"]) == ("2014-03-01", "2014-03-31")
    rows = {r["key"]: r for r in report["rows"]}
    assert _numbers(rows["MOIS"]) == (1, 0, 0, 0.0, 0.5, 1, None, "unreachable", "below")
    assert _numbers(rows["MOEF"]) == (1, 0, 0, 0.0, 0.5, 1, None, "unreachable", "below")
    assert _numbers(rows["MSIT"]) == (1, 1, 0, 1.0, 0.5, 1, 0, 0, "on_track")
    assert _numbers(report["government"]) == (3, 1, 0, 0.3333, 0.5, 2, None, "unreachable", "below")


@pytest.mark.parametrize("period,target", [("2014-12", 0.5), ("2012", 0.3)])
def test_a_period_without_sessions_has_no_data(client, register, period, target):
    report = _shares(client, register, period)
    assert _numbers(report["government"]) == (0, 0, 0, None, target, 0, 0, 0, "no_data")
    assert report["rows"] and all(r["status"] == "no_data" for r in report["rows"])


def test_a_period_before_any_policy_has_no_target(client, register):
    report = _shares(client, register, "2005")
    assert report["government"]["status"] == "no_data"
    assert report["government"]["target"] is None
    assert report["rows"] == []


def test_forecast_unreachable(client, admin):
    _record(client, admin, "MOEF-ECON", "2014-01-10", "video")
    for day in ("2014-02-10", "2014-03-10", "2014-04-10", "2014-05-10", "2014-06-10"):
        _record(client, admin, "MOEF-ECON", day, "in_person")
    _record(client, admin, "MOEF-ECON", "2014-11-10", "video", status="scheduled")
    moef = {r["key"]: r for r in _shares(client, admin, "2014")["rows"]}["MOEF"]
    assert (moef["forecast"], moef["video_needed"], moef["status"]) == ("unreachable", None, "below")
    # Two more scheduled sessions make the target reachable again: 3 needed, 3 scheduled.
    _record(client, admin, "MOEF-ECON", "2014-12-10", "video", status="scheduled")
    _record(client, admin, "MOEF-ECON", "2014-12-20", "video", status="scheduled")
    moef = {r["key"]: r for r in _shares(client, admin, "2014")["rows"]}["MOEF"]
    # 6 held + 3 scheduled: required ceil(4.5) = 5, 1 video so far: 4 needed > 3 scheduled.
    assert (moef["required"], moef["forecast"], moef["status"]) == (5, "unreachable", "below")
    _record(client, admin, "MOEF-ECON", "2014-12-30", "video", status="scheduled")
    moef = {r["key"]: r for r in _shares(client, admin, "2014")["rows"]}["MOEF"]
    # 6 held + 4 scheduled: required 5, 4 needed, 4 scheduled: reachable, at risk.
    assert (moef["required"], moef["video_needed"], moef["forecast"], moef["status"]) == (5, 4, 4, "at_risk")


def test_shares_per_meeting(client, register):
    report = _shares(client, register, "2014", scope="meeting")
    assert report["scope"] == "meeting"
    rows = {r["key"]: r for r in report["rows"]}
    assert list(rows) == ["MOEF-ECON", "MOIS-LOCAL", "MOIS-SAFETY", "MSIT-ICT"]
    assert rows["MOIS-LOCAL"]["host"] == "MOIS"
    # MOIS-LOCAL: 2 video + 1 in person held, 1 scheduled: required ceil(2.0) = 2.
    assert _numbers(rows["MOIS-LOCAL"]) == (3, 2, 1, 0.6667, 0.5, 2, 0, 0, "on_track")
    # MOIS-SAFETY: video + hybrid held, 1 scheduled: required ceil(1.5) = 2.
    assert _numbers(rows["MOIS-SAFETY"]) == (2, 2, 1, 1.0, 0.5, 2, 0, 0, "on_track")
    assert _numbers(rows["MOEF-ECON"]) == (6, 1, 1, 0.1667, 0.5, 4, None, "unreachable", "below")


def test_shares_of_one_ministry_have_its_total_row(client, register):
    report = _shares(client, register, "2014", ministry="MOIS")
    assert report["scope"] == "meeting"
    assert [r["key"] for r in report["rows"]] == ["MOIS-LOCAL", "MOIS-SAFETY"]
    assert report["ministry"]["key"] == "MOIS"
    assert _numbers(report["ministry"]) == (5, 4, 2, 0.8, 0.5, 4, 0, 0, "on_track")
    # The government-wide figure stays government-wide.
    assert report["government"]["held"] == 12


def test_bad_period_is_a_422_on_the_period_field(client, admin):
    for period in ("2014-13", "14", "2014-Q5", "2014/01", "3000"):
        body = error_body(client.get(f"{API}/shares", headers=admin, params={"period": period}), 422,
                          field="period", code="invalid")
        assert period in body["message"]
    error_body(client.get(f"{API}/shares", headers=admin), 422, field="period")
    error_body(client.get(f"{API}/shares", headers=admin, params={"period": "2014", "scope": "planet"}), 422,
               field="scope")


def test_unknown_ministry_is_a_404(client, admin):
    error_body(client.get(f"{API}/shares", headers=admin, params={"period": "2014", "ministry": "NOPE"}), 404,
               field="ministry", code="not_found")
    error_body(client.get(f"{API}/report", headers=admin, params={"period": "2014", "ministry": "NOPE"}), 404)


def test_shares_follow_session_changes(client, admin):
    row = _record(client, admin, "MOIS-LOCAL", "2014-05-02", "in_person")
    mois = {r["key"]: r for r in _shares(client, admin, "2014")["rows"]}["MOIS"]
    assert (mois["video"], mois["share"]) == (0, 0.0)
    client.patch(f"{API}/sessions/{row['id']}", headers=admin, json={"mode": "video"})
    mois = {r["key"]: r for r in _shares(client, admin, "2014")["rows"]}["MOIS"]
    assert (mois["video"], mois["share"], mois["status"]) == (1, 1.0, "on_track")
    client.delete(f"{API}/sessions/{row['id']}", headers=admin)
    assert _shares(client, admin, "2014")["government"]["status"] == "no_data"
