"""The login throttle's database side: failures per (user name, client address) and per address, kept in
`login_throttles` so that every API process sharing the database throttles alike. The rule is in domain.py.

A name locked from one address is never locked from another: an attacker hammering the admin's name from
elsewhere cannot keep the admin out of their own workstation. An address failing across many names is locked
as a whole. Every lock (the moment a key becomes locked) and every unlock is audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from controlplane.auth import audit, domain
from controlplane.auth.models import LoginThrottle
from controlplane.clock import Clock
from controlplane.errors import TooManyAttempts

USER = "user"  # a (user name, address) pair
ADDRESS = "address"  # an address, whatever the name
ACTOR = "login-throttle"
# A user name from one address: 5 tries, then locked 1, 2, 4 ... 60 minutes; one failure forgotten per hour.
USER_POLICY = domain.ThrottlePolicy(free_failures=5, base_delay=timedelta(minutes=1), max_delay=timedelta(hours=1),
                                    forget_one_every=timedelta(hours=1))
# An address across every name: more room (a ministry's users behind one NAT mistype too), then the same growth;
# one failure forgotten per 5 minutes, so a busy office stays well below it while spraying names does not.
ADDRESS_POLICY = domain.ThrottlePolicy(free_failures=20, base_delay=timedelta(minutes=1),
                                       max_delay=timedelta(hours=1), forget_one_every=timedelta(minutes=5))
POLICIES = {USER: USER_POLICY, ADDRESS: ADDRESS_POLICY}
# Rows untouched this long have leaked all their failures (at most max_failures x forget_one_every): dropped.
STALE_AFTER = timedelta(days=7)


class LoginThrottled(TooManyAttempts):
    """A login refused without looking at the password: its (name, address) or its address is locked."""

    def __init__(self, message: str, *, retry_after: int, field: str | None) -> None:
        super().__init__(message, field=field, headers={"Retry-After": str(retry_after)})
        self.retry_after = retry_after


@dataclass(frozen=True)
class Unlocked:
    cleared: int  # addresses whose failures of that name were forgotten
    were_locked: int  # of them, locked at the time


def _streak(row: LoginThrottle) -> domain.Streak:
    return domain.Streak(row.failures, row.last_failure_at, row.locked_until)


def _keys(username: str, address: str) -> list[dict[str, str]]:
    return [{"scope": USER, "username": username, "address": address},
            {"scope": ADDRESS, "username": "", "address": address}]


def _where_keys(username: str, address: str) -> Any:
    return or_(and_(LoginThrottle.scope == USER, LoginThrottle.username == username,
                    LoginThrottle.address == address),
               and_(LoginThrottle.scope == ADDRESS, LoginThrottle.username == "", LoginThrottle.address == address))


def check(session: Session, *, now: datetime, username: str, address: str) -> None:
    """Raise LoginThrottled when the name is locked from this address, or the address is."""
    rows = session.scalars(select(LoginThrottle).where(_where_keys(username, address))).all()
    wait = domain.locked_for([_streak(r) for r in rows], now)
    if wait is None:
        return
    seconds = domain.retry_after_seconds(wait)
    whole_address = any(r.scope == ADDRESS and r.locked_until and r.locked_until > now for r in rows)
    who = "this address" if whole_address else f"'{username}' from this address"
    raise LoginThrottled(f"too many failed logins for {who}; try again in {domain.describe_wait(seconds)}",
                         retry_after=seconds, field=None if whole_address else "username")


def succeeded(session: Session, *, username: str, address: str) -> None:
    """A right password from this address: the name's failures from here are forgotten (the address's are not,
    or one valid account would let an address spray guesses at every other name)."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.scope == USER, LoginThrottle.username == username,
                                                LoginThrottle.address == address))


def _insert_missing(session: Session, keys: list[dict[str, str]]) -> None:
    """Create the keys' rows unless they exist, without a race between processes (ON CONFLICT DO NOTHING).

    On SQLite this is also the first write of the transaction, so the database's write lock is held from here
    on and the read below sees every other process's failures; on PostgreSQL the rows are locked FOR UPDATE."""
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(LoginThrottle).values([{**key, "failures": 0} for key in keys])
    session.execute(statement.on_conflict_do_nothing(index_elements=["scope", "username", "address"]))


def failed(session: Session, *, clock: Clock, username: str, address: str) -> None:
    """Count a wrong password against the (name, address) pair and the address; audit the keys it locks."""
    now = clock.now()
    keys = _keys(username, address)
    _insert_missing(session, keys)
    rows = session.scalars(select(LoginThrottle).where(_where_keys(username, address)).with_for_update()).all()
    for row in rows:
        streak, locked = domain.after_failure(POLICIES[row.scope], _streak(row), now)
        row.failures, row.last_failure_at, row.locked_until = streak.failures, streak.last_failure_at, \
            streak.locked_until
        if locked:
            after = {"address": row.address, "failures": row.failures, "locked_until": row.locked_until}
            if row.scope == USER:
                audit.record(session, clock=clock, actor=ACTOR, action="login_locked", entity_type="user",
                             entity_id=row.username, after=after)
            else:
                audit.record(session, clock=clock, actor=ACTOR, action="login_locked", entity_type="client_address",
                             entity_id=row.address, after=after)
    session.execute(delete(LoginThrottle).where(LoginThrottle.last_failure_at < now - STALE_AFTER,
                                                or_(LoginThrottle.locked_until.is_(None),
                                                    LoginThrottle.locked_until < now)))


def unlock(session: Session, *, clock: Clock, actor: audit.Actor, username: str,
           agency_id: int | None = None) -> Unlocked:
    """Forget the name's failures from every address (an address locked as a whole stays locked)."""
    now = clock.now()
    rows = session.scalars(select(LoginThrottle).where(LoginThrottle.scope == USER,
                                                       LoginThrottle.username == username)).all()
    result = Unlocked(cleared=len(rows),
                      were_locked=sum(1 for r in rows if r.locked_until is not None and r.locked_until > now))
    for row in rows:
        session.delete(row)
    audit.record(session, clock=clock, actor=actor, action="login_unlocked", entity_type="user", entity_id=username,
                 after={"cleared": result.cleared, "were_locked": result.were_locked}, agency_id=agency_id)
    return result
