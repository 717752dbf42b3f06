"""Password hashing (argon2) and opaque bearer secrets (stored as SHA-256 only)."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

TOKEN_PREFIX = "cpt_"
API_KEY_PREFIX = "cpk_"

_hasher = PasswordHasher()
# Verifying against this keeps the time of a login for an unknown user like that of a known one.
_DUMMY_HASH = _hasher.hash("not-a-real-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and password_hash is not None
    except (VerificationError, InvalidHashError):
        return False


def new_secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def password_problem(password: str) -> str | None:
    """Why a password is refused, or None."""
    if len(password) < 12:
        return "must be at least 12 characters"
    if len(password) > 256:
        return "must be at most 256 characters"
    if password.isalpha() or password.isdigit():
        return "must mix letters with digits or symbols"
    return None
