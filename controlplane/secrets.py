"""Small secrets at rest (cloud service-user passwords, ...): Fernet under a key derived from the secret key.

The Fernet key is HKDF-SHA256(CP_SECRET_KEY) with a fixed info label, so the same secret key always opens
what it sealed, a different purpose label gives an unrelated key, and the secret key itself is never used
raw. A Fernet token is authenticated: a token sealed under another key, or altered, is refused.
Neither the plaintext nor the token is ever part of a message, a log line or a repr.
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

INFO_LABEL = b"controlplane/secrets-at-rest/v1"
_SALT = b"controlplane"


class SecretError(Exception):
    """A stored secret could not be opened (another secret key, or the token was altered)."""


def derive_key(secret_key: str, *, info: bytes = INFO_LABEL) -> bytes:
    """The urlsafe-base64 Fernet key derived from the settings' secret key."""
    if not secret_key:
        raise ValueError("a secret key is required to seal secrets")
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=_SALT, info=info).derive(secret_key.encode("utf-8"))
    return base64.urlsafe_b64encode(raw)


class SecretBox:
    """Seals and opens small text secrets with the key derived from `secret_key`."""

    def __init__(self, secret_key: str, *, info: bytes = INFO_LABEL) -> None:
        self._fernet = Fernet(derive_key(secret_key, info=info))

    def __repr__(self) -> str:
        return "SecretBox(***)"

    def seal(self, plaintext: str) -> str:
        """An opaque ASCII token holding `plaintext` (a new random IV each time)."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def open(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError):
            raise SecretError("the stored secret cannot be opened with this secret key") from None
