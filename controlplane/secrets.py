"""Small secrets at rest (cloud service-user passwords, ...): Fernet under a key derived from the secret key.

The Fernet key is HKDF-SHA256(CP_SECRET_KEY) with a fixed info label, so the same secret key always opens
what it sealed, a different purpose label gives an unrelated key, and the secret key itself is never used
raw. A Fernet token is authenticated: a token sealed under another key, or altered, is refused.
Neither the plaintext nor the token is ever part of a message, a log line or a repr.

Rotation: a box also holds the previous secret keys (CP_SECRET_KEY_PREVIOUS). It seals under the current key
only and opens with the current key, then each previous one (cryptography's MultiFernet), so nothing sealed
before a key change is lost; `reseal_columns` re-seals stored values under the current key, after which the
previous keys can be dropped. This module stays below the domains: the caller names the sealed columns.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import Column, select, update
from sqlalchemy.orm import Session

from controlplane.config import Settings

INFO_LABEL = b"controlplane/secrets-at-rest/v1"
_SALT = b"controlplane"
UNOPENABLE_SHOWN = 10


def secret_box(settings: Settings) -> SecretBox:
    """Seals under CP_SECRET_KEY; opens with it or a previous key (CP_SECRET_KEY_PREVIOUS, during a rotation)."""
    return SecretBox(settings.secret_key, previous=settings.previous_secret_keys)


class SecretError(Exception):
    """A stored secret could not be opened (another secret key, or the token was altered)."""


def derive_key(secret_key: str, *, info: bytes = INFO_LABEL) -> bytes:
    """The urlsafe-base64 Fernet key derived from the settings' secret key."""
    if not secret_key:
        raise ValueError("a secret key is required to seal secrets")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(secret_key.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


class SecretBox:
    """Seals small text secrets under `secret_key`; opens what it or any of the `previous` keys sealed."""

    def __init__(self, secret_key: str, *, previous: Iterable[str] = (), info: bytes = INFO_LABEL) -> None:
        self._current = Fernet(derive_key(secret_key, info=info))
        older = list(dict.fromkeys(k for k in previous if k and k != secret_key))
        self._any = MultiFernet([self._current, *(Fernet(derive_key(k, info=info)) for k in older)])

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def seal(self, plaintext: str) -> str:
        """An opaque ASCII token holding `plaintext` (a new random IV each time), under the current key."""
        return self._current.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._any.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise SecretError("the stored secret cannot be opened with this secret key") from None

    def reseal(self, token: str) -> str | None:
        """`token` sealed under the current key, or None when it is under the current key already."""
        try:
            raw = token.encode("ascii")
            self._current.decrypt(raw)
            return None
        except (InvalidToken, UnicodeError, ValueError):
            pass
        try:
            return self._any.rotate(raw).decode("ascii")
        except (InvalidToken, UnicodeError, ValueError):
            raise SecretError("the stored secret cannot be opened with the current or any previous key") from None


@dataclass
class Resealed:
    resealed: int = 0  # were under a previous key, now under the current one
    current: int = 0  # were under the current key already


def reseal_columns(session: Session, *, box: SecretBox, columns: Iterable[Column[Any]]) -> dict[str, Resealed]:
    """Re-seal every value of `columns` (each of a table with a one-column primary key) under the box's current
    key, per "table.column". All or nothing: when any value opens with none of the keys, SecretError names those
    rows (never their content) and nothing is written; the caller's transaction is to be rolled back."""
    counts: dict[str, Resealed] = {}
    unopenable: list[str] = []
    for column in columns:
        table = column.table
        (key_column,) = table.primary_key.columns
        name = f"{table.name}.{column.name}"
        counts[name] = Resealed()
        rows = session.execute(select(key_column, column).where(column.is_not(None)).order_by(key_column)).all()
        for key, token in rows:
            try:
                fresh = box.reseal(token)
            except SecretError:
                unopenable.append(f"{name} {key_column.name}={key}")
                continue
            if fresh is None:
                counts[name].current += 1
            elif not unopenable:  # once one failed, nothing more is written: the whole rotation is refused
                session.execute(update(table).where(key_column == key).values({column.name: fresh}))
                counts[name].resealed += 1
    if unopenable:
        shown = ", ".join(unopenable[:UNOPENABLE_SHOWN]) + (" ..." if len(unopenable) > UNOPENABLE_SHOWN else "")
        raise SecretError(f"{len(unopenable)} sealed value(s) open with neither CP_SECRET_KEY nor any key of "
                          f"CP_SECRET_KEY_PREVIOUS: {shown}")
    return counts
