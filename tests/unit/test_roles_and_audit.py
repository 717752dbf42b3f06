"""Pure rules of identity: roles and permissions, agency reach, audit redaction, password policy, error bodies."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest

from controlplane.auth.audit import REDACTED, SECRET_FIELDS, changed, snapshot
from controlplane.auth.roles import AGENCY_SCOPED, ROLE_PERMISSIONS, Permission, Principal, Role
from controlplane.auth.security import API_KEY_PREFIX, TOKEN_PREFIX, digest, new_secret, password_problem
from controlplane.compliance.domain import Mode
from controlplane.errors import (
    AppError,
    Conflict,
    Forbidden,
    InvalidInput,
    NotAuthenticated,
    NotFound,
    _field_of,
    error_body,
)

WRITES = {Permission.AGENCIES_WRITE, Permission.USERS_WRITE, Permission.MEETINGS_WRITE, Permission.POLICIES_WRITE,
          Permission.SESSIONS_WRITE}


def _principal(role: Role, agency_id: int | None = None) -> Principal:
    return Principal(user_id=1, username="u", role=role, agency_id=agency_id, agency_code="MOIS" if agency_id else None)


# --- roles and permissions ----------------------------------------------------------------------

def test_every_role_has_a_permission_set():
    assert set(ROLE_PERMISSIONS) == set(Role)


def test_admin_has_every_permission():
    assert ROLE_PERMISSIONS[Role.ADMIN] == frozenset(Permission)


@pytest.mark.parametrize("role", list(Role))
def test_every_role_reads_the_register_and_agencies(role):
    principal = _principal(role, 7)
    assert principal.has(Permission.COMPLIANCE_READ)
    assert principal.has(Permission.AGENCIES_READ)


def test_auditor_reads_users_and_audit_but_writes_nothing():
    auditor = _principal(Role.AUDITOR)
    assert auditor.has(Permission.USERS_READ) and auditor.has(Permission.AUDIT_READ)
    assert not any(auditor.has(p) for p in WRITES)


def test_operator_cannot_write_sessions_nor_read_audit_or_users():
    operator = _principal(Role.OPERATOR)
    for permission in (Permission.SESSIONS_WRITE, Permission.AUDIT_READ, Permission.USERS_READ, *WRITES):
        assert not operator.has(permission), permission


@pytest.mark.parametrize("role", [Role.SECRETARIAT, Role.MINISTRY])
def test_secretariat_and_ministry_record_sessions_only(role):
    principal = _principal(role, 7)
    assert principal.has(Permission.SESSIONS_WRITE)
    assert not any(principal.has(p) for p in WRITES - {Permission.SESSIONS_WRITE})
    assert not principal.has(Permission.AUDIT_READ) and not principal.has(Permission.USERS_READ)


def test_only_admins_manage_users_agencies_meetings_and_policies():
    for permission in WRITES - {Permission.SESSIONS_WRITE}:
        assert [r for r in Role if permission in ROLE_PERMISSIONS[r]] == [Role.ADMIN], permission


# --- agency reach -------------------------------------------------------------------------------

def test_ministry_is_the_only_agency_scoped_role():
    assert frozenset({Role.MINISTRY}) == AGENCY_SCOPED
    assert _principal(Role.MINISTRY, 7).scoped
    assert not any(_principal(r, 7).scoped for r in Role if r != Role.MINISTRY)


def test_ministry_user_reaches_only_its_own_agency():
    mois = _principal(Role.MINISTRY, 7)
    assert mois.can_reach(7)
    assert not mois.can_reach(8)
    assert not mois.can_reach(None)


def test_ministry_user_without_agency_reaches_nothing():
    orphan = _principal(Role.MINISTRY, None)
    assert not orphan.can_reach(None)
    assert not orphan.can_reach(7)


@pytest.mark.parametrize("role", [Role.ADMIN, Role.OPERATOR, Role.SECRETARIAT, Role.AUDITOR])
def test_unscoped_roles_reach_every_agency(role):
    for principal in (_principal(role), _principal(role, 7)):
        assert principal.can_reach(7) and principal.can_reach(8) and principal.can_reach(None)


# --- audit before/after -------------------------------------------------------------------------

def test_changed_keeps_only_the_fields_that_differ():
    before = {"mode": "in_person", "held_on": "2014-05-02", "note": ""}
    after = {"mode": "video", "held_on": "2014-05-02", "note": ""}
    assert changed(before, after) == ({"mode": "in_person"}, {"mode": "video"})


def test_changed_of_identical_snapshots_is_empty():
    same = {"a": 1, "b": [1, 2]}
    assert changed(same, dict(same)) == ({}, {})


def test_changed_treats_a_new_field_as_changed_from_none():
    assert changed({}, {"name": "x"}) == ({"name": None}, {"name": "x"})


@pytest.mark.parametrize("field", sorted(SECRET_FIELDS))
def test_changed_redacts_secret_fields_on_both_sides(field):
    before, after = changed({field: "$argon2id$v=19$old", "role": "operator"},
                            {field: "$argon2id$v=19$new", "role": "admin"})
    assert before == {field: REDACTED, "role": "operator"}
    assert after == {field: REDACTED, "role": "admin"}
    assert "argon2" not in repr((before, after))


def test_password_fields_are_secret():
    assert {"password", "password_hash", "token_hash", "key_hash"} <= SECRET_FIELDS
    assert REDACTED == "***"


def test_changed_makes_values_json_plain():
    before, after = changed(
        {"mode": Mode.IN_PERSON, "held_on": date(2014, 5, 2), "amount": Decimal("1.50"), "tags": ("a",)},
        {"mode": Mode.VIDEO, "held_on": date(2014, 5, 3), "amount": Decimal("2.00"), "tags": ("a", "b")},
    )
    assert before == {"mode": "in_person", "held_on": "2014-05-02", "amount": "1.50", "tags": ["a"]}
    assert after == {"mode": "video", "held_on": "2014-05-03", "amount": "2.00", "tags": ["a", "b"]}


def test_snapshot_reads_the_named_attributes():
    class Row:
        mode = Mode.HYBRID
        at = datetime(2014, 7, 1, 3, 0, tzinfo=UTC)
        secret = "kept out"

    assert snapshot(Row(), ("mode", "at")) == {"mode": "hybrid", "at": "2014-07-01T03:00:00+00:00"}


# --- passwords and secrets ----------------------------------------------------------------------

@pytest.mark.parametrize("password,problem", [
    ("", "at least 12"),
    ("Short-1", "at least 12"),
    ("elevenchar1", "at least 12"),
    ("a1" * 128 + "x", "at most 256"),
    ("onlylettershere", "mix"),
    ("ÄÖÜäöüßéèêëï", "mix"),
    ("123456789012", "mix"),
])
def test_password_problem_names_the_reason(password, problem):
    reason = password_problem(password)
    assert reason is not None and problem in reason


@pytest.mark.parametrize("password", ["twelve-chars", "correct-horse-battery-9", "a1" * 128, "비밀번호는열두글자이상1"])
def test_password_problem_accepts_good_passwords(password):
    assert password_problem(password) is None


def test_new_secrets_are_prefixed_random_and_hashed_deterministically():
    token, key = new_secret(TOKEN_PREFIX), new_secret(API_KEY_PREFIX)
    assert token.startswith("cpt_") and key.startswith("cpk_")
    assert new_secret(TOKEN_PREFIX) != token
    assert len(token) >= 40
    assert digest(token) == digest(token) and digest(token) != digest(key)
    assert token not in digest(token) and len(digest(token)) == 64


# --- error bodies -------------------------------------------------------------------------------

def test_error_body_has_code_message_and_field():
    assert error_body("not_found", "unknown agency 'X'", "code") == {
        "code": "not_found", "message": "unknown agency 'X'", "field": "code"}
    assert error_body("forbidden", "no") == {"code": "forbidden", "message": "no", "field": None}


def test_error_body_carries_details_only_when_given():
    details = [{"row": 3, "field": "mode", "reason": "bad mode"}]
    assert error_body("import_failed", "1 bad row", "file", details) == {
        "code": "import_failed", "message": "1 bad row", "field": "file", "details": details}
    assert "details" not in error_body("invalid", "x", "f", None)
    assert error_body("invalid", "x", "f", [])["details"] == []


@pytest.mark.parametrize("cls,status,code", [
    (InvalidInput, 422, "invalid"), (NotAuthenticated, 401, "not_authenticated"), (Forbidden, 403, "forbidden"),
    (NotFound, 404, "not_found"), (Conflict, 409, "conflict"),
])
def test_app_errors_map_to_status_and_code(cls, status, code):
    error = cls("message", field="name")
    assert isinstance(error, AppError)
    assert (error.status_code, error.code, error.message, error.field, error.details) == \
        (status, code, "message", "name", None)


def test_validation_locations_become_dotted_fields():
    assert _field_of(("body", "meeting", "code")) == "meeting.code"
    assert _field_of(("query", "period")) == "period"
    assert _field_of(("body", "participants", 2)) == "participants.2"
    assert _field_of(("body",)) == "body"
