"""How talking to a video bridge can fail (controlplane.rooms.janus raises them; the reconcile reads them)."""

from __future__ import annotations

from typing import Any

from controlplane.errors import AppError


# -- errors ---------------------------------------------------------------------------------------------------------
class BridgeFailure(AppError):
    """Something went wrong with a bridge; the message names the bridge and the operation."""

    status_code = 502
    code = "bridge_failure"


class BridgeUnreachable(BridgeFailure):
    """The bridge did not answer: connection refused or reset, or no answer within the timeout."""

    status_code = 503
    code = "bridge_unreachable"


class BridgeError(BridgeFailure):
    """Janus answered with an error: `janus_code` and `reason` are Janus's (the HTTP status when it was no Janus
    reply at all). `code` stays the control plane's error code, as on every AppError."""

    code = "bridge_error"

    def __init__(self, janus_code: int, reason: str, message: str | None = None) -> None:
        super().__init__(message or f"Janus error {janus_code}: {reason}")
        self.janus_code = janus_code
        self.reason = reason

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (a durable step's failure) and read back whole
        return type(self), (self.janus_code, self.reason, self.message)


class BridgeAuthFailed(BridgeError):
    """The bridge refused the secret (the admin secret, or an API secret the bridge wants): Janus error 403."""

    code = "bridge_auth_failed"


class RoomExists(BridgeError):
    """There is already a room with that number on the bridge (Janus videoroom error 427)."""

    status_code = 409
    code = "bridge_room_exists"


class RoomMissing(BridgeError):
    """There is no room with that number on the bridge (Janus videoroom error 426)."""

    status_code = 404
    code = "bridge_room_missing"
