"""The audit log: every mutation records who, when, what, and the before/after of changed fields."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

from sqlalchemy import event
from sqlalchemy.orm import Session

from controlplane.auth.models import AuditEntry
from controlplane.auth.roles import Principal
from controlplane.clock import Clock

SECRET_FIELDS = frozenset({"password", "password_hash", "token_hash", "key_hash", "secret", "api_key"})
REDACTED = "***"

# A CLI or seed run acts as a named system actor rather than a logged-in user.
Actor = Principal | str


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, list | tuple | set | frozenset):
        return [_plain(v) for v in value]
    return value


def snapshot(obj: Any, fields: tuple[str, ...] | list[str]) -> dict[str, Any]:
    return {name: _plain(getattr(obj, name)) for name in fields}


def changed(before: dict[str, Any], after: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Only the fields whose value differs, with secrets redacted."""
    keys = [k for k in after if before.get(k) != after[k]]
    return (
        {k: REDACTED if k in SECRET_FIELDS else _plain(before.get(k)) for k in keys},
        {k: REDACTED if k in SECRET_FIELDS else _plain(after[k]) for k in keys},
    )


def record(
    session: Session,
    *,
    clock: Clock,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: object = None,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    agency_id: int | None = None,
) -> AuditEntry:
    if before is not None and after is not None:
        before, after = changed(before, after)
    else:
        before = None if before is None else changed({}, before)[1]
        after = None if after is None else changed({}, after)[1]
    entry = AuditEntry(
        at=clock.now(),
        actor_user_id=actor.user_id if isinstance(actor, Principal) else None,
        actor=actor.username if isinstance(actor, Principal) else actor,
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        agency_id=agency_id,
        before=before,
        after=after,
    )
    session.add(entry)
    return entry


@event.listens_for(Session, "before_flush")
def _audit_is_append_only(session: Session, _context: Any, _instances: Any) -> None:
    for obj in list(session.dirty) + list(session.deleted):
        if isinstance(obj, AuditEntry) and (obj in session.deleted or session.is_modified(obj)):
            raise PermissionError("audit entries are append-only")
