"""Database access for identity: agencies, users, tokens, API keys. Keyword-only, no HTTP."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from controlplane.auth import audit, domain, throttle
from controlplane.auth.models import AccessToken, Agency, ApiKey, AuditEntry, User
from controlplane.auth.roles import Principal, Role
from controlplane.auth.schemas import (
    AgencyCreate,
    AgencyRead,
    AgencyUpdate,
    ApiKeyCreate,
    UserCreate,
    UserRead,
    UserUpdate,
)
from controlplane.auth.security import (
    API_KEY_PREFIX,
    TOKEN_PREFIX,
    digest,
    hash_password,
    new_secret,
    verify_password,
)
from controlplane.clock import Clock
from controlplane.db import transaction
from controlplane.errors import Conflict, InvalidInput, NotAuthenticated, NotFound

AGENCIES_FILE = Path(__file__).parent / "data" / "agencies.yaml"
AGENCY_FIELDS = ("code", "name_ko", "name_en", "kind", "parent_id")
USER_FIELDS = ("username", "full_name", "email", "role", "agency_id", "active", "password_hash")


# --- agencies ---------------------------------------------------------------------------------

def agency_read(agency: Agency) -> AgencyRead:
    return AgencyRead(
        id=agency.id, code=agency.code, name_ko=agency.name_ko, name_en=agency.name_en, kind=agency.kind,
        parent_code=agency.parent.code if agency.parent else None,
    )


def list_agencies(session: Session, *, kind: str | None = None) -> Sequence[Agency]:
    query = select(Agency).order_by(Agency.code)
    if kind:
        query = query.where(Agency.kind == kind)
    return session.scalars(query).all()


def agency_by_code(session: Session, *, code: str, field: str = "agency_code") -> Agency:
    agency = session.scalar(select(Agency).where(Agency.code == code))
    if agency is None:
        raise NotFound(f"unknown agency '{code}'", field=field)
    return agency


def create_agency(session: Session, *, clock: Clock, actor: audit.Actor, data: AgencyCreate) -> Agency:
    if session.scalar(select(Agency.id).where(Agency.code == data.code)) is not None:
        raise Conflict(f"agency '{data.code}' exists already", field="code")
    parent = agency_by_code(session, code=data.parent_code, field="parent_code") if data.parent_code else None
    agency = Agency(
        code=data.code, name_ko=data.name_ko, name_en=data.name_en, kind=data.kind.value,
        parent_id=parent.id if parent else None, created_at=clock.now(),
    )
    session.add(agency)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="create", entity_type="agency",
                 entity_id=agency.code, after=audit.snapshot(agency, AGENCY_FIELDS), agency_id=agency.id)
    return agency


def update_agency(
    session: Session, *, clock: Clock, actor: audit.Actor, code: str, data: AgencyUpdate
) -> Agency:
    agency = agency_by_code(session, code=code, field="code")
    before = audit.snapshot(agency, AGENCY_FIELDS)
    for name, value in data.model_dump(exclude_unset=True, exclude_none=True).items():
        setattr(agency, name, getattr(value, "value", value))
    after = audit.snapshot(agency, AGENCY_FIELDS)
    if before != after:
        audit.record(session, clock=clock, actor=actor, action="update", entity_type="agency",
                     entity_id=agency.code, before=before, after=after, agency_id=agency.id)
    return agency


def seed_agencies(session: Session, *, clock: Clock, actor: audit.Actor, path: Path = AGENCIES_FILE) -> int:
    """Load the agency catalogue idempotently: missing agencies are created, names kept current."""
    rows: list[dict[str, Any]] = yaml.safe_load(path.read_text(encoding="utf-8"))
    existing = {a.code: a for a in session.scalars(select(Agency))}
    created = 0
    for row in rows:  # the file lists parents before their children
        parent = existing.get(row["parent"]) if row.get("parent") else None
        agency = existing.get(row["code"])
        if agency is None:
            agency = create_agency(session, clock=clock, actor=actor, data=AgencyCreate(
                code=row["code"], name_ko=row["name_ko"], name_en=row["name_en"], kind=row["kind"],
                parent_code=parent.code if parent else None,
            ))
            existing[agency.code] = agency
            created += 1
        else:
            update_agency(session, clock=clock, actor=actor, code=agency.code, data=AgencyUpdate(
                name_ko=row["name_ko"], name_en=row["name_en"], kind=row["kind"],
            ))
    return created


# --- users --------------------------------------------------------------------------------------

def user_read(user: User) -> UserRead:
    return UserRead(
        id=user.id, username=user.username, full_name=user.full_name, email=user.email, role=Role(user.role),
        agency_code=user.agency.code if user.agency else None, active=user.active, created_at=user.created_at,
    )


def list_users(session: Session) -> Sequence[User]:
    return session.scalars(select(User).order_by(User.username)).all()


def get_user(session: Session, *, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"unknown user '{username}'", field="username")
    return user


def _check_role_scope(role: Role, agency: Agency | None) -> None:
    if role == Role.MINISTRY and agency is None:
        raise InvalidInput("a ministry user must belong to an agency", field="agency_code")


def create_user(session: Session, *, clock: Clock, actor: audit.Actor, data: UserCreate) -> User:
    if session.scalar(select(User.id).where(User.username == data.username)) is not None:
        raise Conflict(f"user '{data.username}' exists already", field="username")
    agency = agency_by_code(session, code=data.agency_code) if data.agency_code else None
    _check_role_scope(data.role, agency)
    now = clock.now()
    user = User(
        username=data.username, full_name=data.full_name, email=data.email,
        password_hash=hash_password(data.password), role=data.role.value,
        agency_id=agency.id if agency else None, agency=agency, active=True, created_at=now, updated_at=now,
    )
    session.add(user)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="create", entity_type="user", entity_id=user.username,
                 after=audit.snapshot(user, USER_FIELDS), agency_id=user.agency_id)
    return user


@dataclass(frozen=True)
class Revoked:
    """What an update took away from the user: live tokens, and live API keys."""

    tokens: int = 0
    api_keys: int = 0


def update_user(
    session: Session, *, clock: Clock, actor: audit.Actor, username: str, data: UserUpdate
) -> tuple[User, Revoked]:
    """Apply the changes; a new password revokes every token and API key of the user (whoever held the old
    password may have made some), deactivation revokes the tokens (API keys stop working while inactive)."""
    user = get_user(session, username=username)
    before = audit.snapshot(user, USER_FIELDS)
    fields = data.model_dump(exclude_unset=True)
    if "agency_code" in fields:
        code = fields.pop("agency_code")
        user.agency = agency_by_code(session, code=code) if code else None
        user.agency_id = user.agency.id if user.agency else None
    if (password := fields.pop("password", None)) is not None:
        user.password_hash = hash_password(password)
    for name, value in fields.items():
        if value is None and name in ("role", "active", "full_name"):
            raise InvalidInput(f"{name} cannot be null", field=name)
        setattr(user, name, getattr(value, "value", value))
    _check_role_scope(Role(user.role), user.agency)
    after = audit.snapshot(user, USER_FIELDS)
    revoked = Revoked()
    if before != after:
        user.updated_at = clock.now()
        audit.record(session, clock=clock, actor=actor, action="update", entity_type="user",
                     entity_id=user.username, before=before, after=after, agency_id=user.agency_id)
        reset = before["password_hash"] != after["password_hash"]
        if reset or not user.active:
            revoked = Revoked(tokens=revoke_all_tokens(session, clock=clock, user_id=user.id),
                              api_keys=revoke_all_api_keys(session, clock=clock, user_id=user.id) if reset else 0)
            audit.record(session, clock=clock, actor=actor, action="revoke_credentials", entity_type="user",
                         entity_id=user.username, after={"reason": "password_reset" if reset else "deactivated",
                                                         "tokens": revoked.tokens, "api_keys": revoked.api_keys},
                         agency_id=user.agency_id)
    return user, revoked


def unlock_user(session: Session, *, clock: Clock, actor: audit.Actor, username: str) -> throttle.Unlocked:
    """Lift the login throttle of a user's name from every address (audited, even when nothing was locked)."""
    user = get_user(session, username=username)
    return throttle.unlock(session, clock=clock, actor=actor, username=user.username, agency_id=user.agency_id)


# --- tokens and API keys ------------------------------------------------------------------------

def authenticate(session: Session, *, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    ok = verify_password(user.password_hash if user else None, password)
    return user if ok and user is not None and user.active else None


def login(
    sessions: sessionmaker[Session], *, clock: Clock, username: str, password: str, ttl: timedelta, address: str
) -> tuple[str, AccessToken]:
    """Check the password and issue a token, unless the name is throttled from this client address or the
    address is throttled as a whole (throttle.LoginThrottled, with the seconds to wait).

    A throttled login is refused before the password is looked at, for any name, known or not, so it tells an
    attacker nothing. A failure is counted and audited in its own transaction, so it is kept although the login
    is refused.
    """
    name, where = username[:64], domain.throttle_key(address)
    with transaction(sessions) as session:
        throttle.check(session, now=clock.now(), username=name, address=where)
        user = authenticate(session, username=username, password=password)
        if user is not None:
            throttle.succeeded(session, username=name, address=where)
            return issue_token(session, clock=clock, user=user, ttl=ttl)
    with transaction(sessions) as session:
        audit.record(session, clock=clock, actor="anonymous", action="login_failed", entity_type="user",
                     entity_id=name, after={"address": where})
        throttle.failed(session, clock=clock, username=name, address=where)
    raise NotAuthenticated("wrong username or password")


def issue_token(session: Session, *, clock: Clock, user: User, ttl: timedelta) -> tuple[str, AccessToken]:
    raw = new_secret(TOKEN_PREFIX)
    now = clock.now()
    token = AccessToken(user_id=user.id, token_hash=digest(raw), created_at=now, expires_at=now + ttl)
    session.add(token)
    session.flush()
    audit.record(session, clock=clock, actor=_principal(user, token.id), action="login", entity_type="access_token",
                 entity_id=token.id, after={"expires_at": token.expires_at}, agency_id=user.agency_id)
    return raw, token


def revoke_token(session: Session, *, clock: Clock, actor: Principal) -> None:
    token = session.get(AccessToken, actor.token_id) if actor.token_id else None
    if token is not None and token.revoked_at is None:
        token.revoked_at = clock.now()
        audit.record(session, clock=clock, actor=actor, action="logout", entity_type="access_token",
                     entity_id=token.id, before={"revoked_at": None}, after={"revoked_at": token.revoked_at},
                     agency_id=actor.agency_id)


def revoke_all_tokens(session: Session, *, clock: Clock, user_id: int) -> int:
    """Revoke the user's live tokens; how many there were."""
    now = clock.now()
    tokens = session.scalars(select(AccessToken).where(
        AccessToken.user_id == user_id, AccessToken.revoked_at.is_(None), AccessToken.expires_at > now)).all()
    for token in tokens:
        token.revoked_at = now
    return len(tokens)


def revoke_all_api_keys(session: Session, *, clock: Clock, user_id: int) -> int:
    """Revoke the user's live API keys (expired ones stay as they are); how many there were."""
    now = clock.now()
    keys = session.scalars(select(ApiKey).where(
        ApiKey.user_id == user_id, ApiKey.revoked_at.is_(None),
        (ApiKey.expires_at.is_(None)) | (ApiKey.expires_at > now))).all()
    for key in keys:
        key.revoked_at = now
    return len(keys)


def create_api_key(session: Session, *, clock: Clock, actor: Principal, data: ApiKeyCreate) -> tuple[str, ApiKey]:
    raw = new_secret(API_KEY_PREFIX)
    now = clock.now()
    key = ApiKey(
        user_id=actor.user_id, name=data.name, prefix=raw[:12], key_hash=digest(raw), created_at=now,
        expires_at=now + timedelta(days=data.expires_in_days) if data.expires_in_days else None,
    )
    session.add(key)
    session.flush()
    audit.record(session, clock=clock, actor=actor, action="create", entity_type="api_key", entity_id=key.id,
                 after={"name": key.name, "prefix": key.prefix, "expires_at": key.expires_at},
                 agency_id=actor.agency_id)
    return raw, key


def list_api_keys(session: Session, *, user_id: int) -> Sequence[ApiKey]:
    return session.scalars(select(ApiKey).where(ApiKey.user_id == user_id).order_by(ApiKey.id)).all()


def revoke_api_key(session: Session, *, clock: Clock, actor: Principal, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None or key.user_id != actor.user_id:
        raise NotFound(f"unknown API key {key_id}", field="key_id")
    if key.revoked_at is None:
        key.revoked_at = clock.now()
        audit.record(session, clock=clock, actor=actor, action="revoke", entity_type="api_key", entity_id=key.id,
                     before={"revoked_at": None}, after={"revoked_at": key.revoked_at}, agency_id=actor.agency_id)
    return key


def _principal(user: User, token_id: int | None = None) -> Principal:
    return Principal(
        user_id=user.id, username=user.username, role=Role(user.role), agency_id=user.agency_id,
        agency_code=user.agency.code if user.agency else None, token_id=token_id,
    )


def _live(expires_at: datetime | None, revoked_at: datetime | None, now: datetime) -> bool:
    return revoked_at is None and (expires_at is None or expires_at > now)


def resolve_bearer(session: Session, *, clock: Clock, secret: str) -> Principal | None:
    """The principal behind a bearer token or API key, or None if it is unknown, expired or revoked."""
    now = clock.now()
    hashed = digest(secret)
    if secret.startswith(TOKEN_PREFIX):
        token = session.scalar(select(AccessToken).where(AccessToken.token_hash == hashed))
        if token is None or not _live(token.expires_at, token.revoked_at, now):
            return None
        user, token_id = session.get(User, token.user_id), token.id
    elif secret.startswith(API_KEY_PREFIX):
        key = session.scalar(select(ApiKey).where(ApiKey.key_hash == hashed))
        if key is None or not _live(key.expires_at, key.revoked_at, now):
            return None
        key.last_used_at = now
        user, token_id = session.get(User, key.user_id), None
    else:
        return None
    if user is None or not user.active:
        return None
    return _principal(user, token_id)


def list_audit(
    session: Session, *, entity_type: str | None = None, actor: str | None = None, limit: int = 100, offset: int = 0
) -> Sequence[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    if entity_type:
        query = query.where(AuditEntry.entity_type == entity_type)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    return session.scalars(query).all()
