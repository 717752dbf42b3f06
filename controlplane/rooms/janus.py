"""JanusBridge: the control plane's only way to a Janus bridge (its HTTP API and admin API; the only module that
speaks Janus).

- One client per bridge keeps one Janus session with a videoroom handle attached, made on first use. The client
  sends no keepalives: an idle session is reaped by Janus after its session timeout (60 s by default, and never
  <= 30 s on a bridge of ours), and so is every session when Janus restarts. A request that Janus answers with
  458/459 (no such session/handle) was not carried out, so it is sent once more on a fresh session.
- Rooms are made with `permanent: false`: they live in the bridge's memory only, and the control plane reconciles
  them (a restarted bridge has none).
- Janus's answers and failures become the errors below in one place (`_janus_error`, `_post`); their messages
  name the bridge (host:port) and the operation, never a secret (the admin secret, room secrets, pins).
- No retry loop beyond the session renewal: a step that calls the bridge runs in a durable workflow, which
  repeats it; an unreachable bridge fails fast, within `timeout`.

The types (BridgeInfo, BridgeRoom, Participant, BridgeLoad) and errors are the bridge port's
(controlplane.rooms.domain, .errors); the parse_* functions turn Janus's JSON into them and are pure.
"""

from __future__ import annotations

import contextlib
import json
import logging
import secrets
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import partial
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from controlplane.rooms.domain import BridgeInfo, BridgeLoad, BridgeRoom, Participant
from controlplane.rooms.errors import (
    BridgeAuthFailed,
    BridgeError,
    BridgeFailure,
    BridgeUnreachable,
    RoomExists,
    RoomMissing,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

VIDEOROOM = "janus.plugin.videoroom"
# Janus core error codes (janus/apierror.h) and the videoroom plugin's (janus_videoroom.c).
UNAUTHORIZED = 403
NO_SUCH_SESSION = 458
NO_SUCH_HANDLE = 459
NO_SUCH_ROOM = 426
ROOM_EXISTS = 427
SESSION_GONE = (NO_SUCH_SESSION, NO_SUCH_HANDLE)
# What `create_room` asks for so that `talking` means something (the default threshold, 25, is rarely passed).
AUDIO_LEVEL_AVERAGE = 120
# Janus's own default, given so that it does not warn about its absence on every create.
AUDIO_ACTIVE_PACKETS = 100
# The most of a reply read (a bridge with thousands of rooms still answers in far less).
MAX_REPLY_BYTES = 16 * 1024 * 1024


# -- parsing (pure) -------------------------------------------------------------------------------------------------
class MalformedReply(ValueError):
    """A reply that is not what Janus sends."""


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedReply(f"{what} is not an integer")
    return value


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise MalformedReply(f"{what} is not an object")
    return value


def _list(value: Any, what: str) -> Sequence[Any]:
    if not isinstance(value, list):
        raise MalformedReply(f"{what} is not a list")
    return value


def janus_error(reply: Mapping[str, Any]) -> tuple[int, str] | None:
    """(code, reason) of an error of Janus itself (`{"janus": "error", ...}`), else None."""
    if reply.get("janus") != "error":
        return None
    error = reply.get("error")
    if not isinstance(error, Mapping):
        return 0, "error without details"
    code = error.get("code")
    return (code if isinstance(code, int) and not isinstance(code, bool) else 0), str(error.get("reason") or "")


def plugin_data(reply: Mapping[str, Any]) -> Mapping[str, Any]:
    """The videoroom's answer inside a `success` reply to a synchronous message."""
    plugindata = _mapping(reply.get("plugindata"), "plugindata")
    return _mapping(plugindata.get("data"), "plugindata.data")


def plugin_error(data: Mapping[str, Any]) -> tuple[int, str] | None:
    """(error_code, error) when the videoroom refused the request, else None."""
    if "error_code" not in data and "error" not in data:
        return None
    code = data.get("error_code")
    return (code if isinstance(code, int) and not isinstance(code, bool) else 0), str(data.get("error") or "")


def parse_info(reply: Mapping[str, Any]) -> BridgeInfo:
    if reply.get("janus") != "server_info":
        raise MalformedReply("not a server_info reply")
    version = reply.get("version_string") or reply.get("version")
    if not isinstance(version, str | int):
        raise MalformedReply("no version")
    plugins = reply.get("plugins")
    timeout = reply.get("session-timeout", 0)
    return BridgeInfo(
        version=str(version), up=True,
        session_timeout=timeout if isinstance(timeout, int) and not isinstance(timeout, bool) else 0,
        videoroom=isinstance(plugins, Mapping) and VIDEOROOM in plugins)


def parse_rooms(data: Mapping[str, Any]) -> list[BridgeRoom]:
    """The rooms of a videoroom `list` answer, by room number."""
    rooms = []
    for item in _list(data.get("list"), "list"):
        entry = _mapping(item, "room")
        rooms.append(BridgeRoom(
            room=_int(entry.get("room"), "room"),
            description=str(entry.get("description") or ""),
            max_publishers=_int(entry.get("max_publishers", 0), "max_publishers"),
            participants=_int(entry.get("num_participants", 0), "num_participants"),
            pin_required=bool(entry.get("pin_required", False))))
    return sorted(rooms, key=lambda room: room.room)


def parse_participants(data: Mapping[str, Any]) -> list[Participant]:
    """The participants of a videoroom `listparticipants` answer."""
    participants = []
    for item in _list(data.get("participants"), "participants"):
        entry = _mapping(item, "participant")
        ident = entry.get("id")
        if isinstance(ident, bool) or not isinstance(ident, int | str):
            raise MalformedReply("participant id is neither an integer nor a string")
        participants.append(Participant(
            id=ident, display=str(entry.get("display") or ""), publisher=bool(entry.get("publisher", False)),
            talking=bool(entry.get("talking", False))))
    return participants


def load_of(rooms: Iterable[BridgeRoom]) -> BridgeLoad:
    counted = list(rooms)
    return BridgeLoad(rooms=len(counted), participants=sum(room.participants for room in counted))


def scrub(text: str, hidden: Iterable[str | None]) -> str:
    """`text` with every non-empty string of `hidden` replaced by ***."""
    for value in sorted((value for value in hidden if value), key=len, reverse=True):
        text = text.replace(value, "***")
    return text


def where(url: str) -> str:
    """host:port of a URL, for messages (never its user info, path or query)."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return f"{host}:{port}"


def _without_userinfo(url: str) -> str:
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


# -- the client -----------------------------------------------------------------------------------------------------
class JanusBridge:
    """One Janus bridge. Synchronous and safe to share between threads."""

    def __init__(self, url: str, admin_url: str, admin_secret: str, *, timeout: float = 5.0) -> None:
        for name, value in (("url", url), ("admin_url", admin_url)):
            if urlsplit(value).scheme not in ("http", "https") or not urlsplit(value).hostname:
                raise ValueError(f"{name} must be an http(s) URL with a host")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        self.url = url.rstrip("/")
        self.admin_url = admin_url.rstrip("/")
        self.timeout = timeout
        self.__admin_secret = admin_secret
        self._lock = threading.Lock()
        self._session: tuple[int, int] | None = None  # (session id, videoroom handle id)

    def __repr__(self) -> str:
        return f"JanusBridge(url={_without_userinfo(self.url)!r}, admin_url={_without_userinfo(self.admin_url)!r})"

    @property
    def name(self) -> str:
        """The bridge as messages name it: host:port of its HTTP API."""
        return where(self.url)

    def close(self) -> None:
        """Destroy this client's session (best effort: the bridge reaps it anyway when it is idle)."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            try:
                self._post(f"{self.url}/{session[0]}", {"janus": "destroy"}, "close the session")
            except BridgeFailure as exc:
                log.debug("bridge %s: destroying session failed: %s", self.name, exc)

    def __enter__(self) -> JanusBridge:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    # -- the bridge ---------------------------------------------------------------------------------------------
    def info(self) -> BridgeInfo:
        what = "info"
        return self._parsed(what, lambda: parse_info(self._post(self.url, {"janus": "info"}, what)))

    def admin_check(self) -> None:
        """The admin API answers and takes our admin secret (BridgeAuthFailed when it does not)."""
        self._post(self.admin_url, {"janus": "list_sessions", "admin_secret": self.__admin_secret},
                   "admin check", base=self.admin_url)

    def load(self) -> BridgeLoad:
        return load_of(self.list_rooms())

    # -- rooms --------------------------------------------------------------------------------------------------
    def list_rooms(self) -> list[BridgeRoom]:
        what = "list rooms"
        data = self._message({"request": "list"}, what)
        return self._parsed(what, lambda: parse_rooms(data))

    def create_room(self, room: int, *, description: str, secret: str, pin: str | None, publishers: int) -> None:
        """A room in the bridge's memory (`permanent: false`); RoomExists when the number is taken."""
        body: dict[str, Any] = {
            "request": "create", "room": room, "permanent": False, "description": description, "secret": secret,
            "publishers": publishers, "is_private": False, "audiolevel_event": True,
            "audio_level_average": AUDIO_LEVEL_AVERAGE, "audio_active_packets": AUDIO_ACTIVE_PACKETS}
        if pin is not None:
            body["pin"] = pin
        self._message(body, f"create room {room}", hidden=(secret, pin))

    def edit_room(self, room: int, *, secret: str, description: str | None = None, pin: str | None = None,
                  publishers: int | None = None) -> None:
        """Change what is given (None: unchanged). Janus can set a pin but not remove one: recreate the room."""
        body: dict[str, Any] = {"request": "edit", "room": room, "secret": secret, "permanent": False}
        if description is not None:
            body["new_description"] = description
        if pin is not None:
            body["new_pin"] = pin
        if publishers is not None:
            body["new_publishers"] = publishers
        self._message(body, f"edit room {room}", hidden=(secret, pin))

    def destroy_room(self, room: int, *, secret: str) -> None:
        """RoomMissing when there is no such room."""
        self._message({"request": "destroy", "room": room, "secret": secret, "permanent": False},
                      f"destroy room {room}", hidden=(secret,))

    def participants(self, room: int) -> list[Participant]:
        """Who is in the room (neither pin nor secret is needed); RoomMissing when there is no such room."""
        what = f"list participants of room {room}"
        data = self._message({"request": "listparticipants", "room": room}, what)
        return self._parsed(what, lambda: parse_participants(data))

    # -- Janus sessions -----------------------------------------------------------------------------------------
    def _handle(self) -> tuple[int, int]:
        with self._lock:
            if self._session is None:
                self._session = self._attach()
            return self._session

    def _attach(self) -> tuple[int, int]:
        reply = self._post(self.url, {"janus": "create"}, "create a session")
        session = self._parsed("create a session", lambda: _int(_mapping(reply.get("data"), "data").get("id"), "id"))
        try:
            reply = self._post(f"{self.url}/{session}", {"janus": "attach", "plugin": VIDEOROOM}, "attach videoroom")
            handle = self._parsed("attach videoroom",
                                  lambda: _int(_mapping(reply.get("data"), "data").get("id"), "id"))
        except BridgeFailure:
            with contextlib.suppress(BridgeFailure):
                self._post(f"{self.url}/{session}", {"janus": "destroy"}, "destroy a session")
            raise
        log.debug("bridge %s: session %s, videoroom handle %s", self.name, session, handle)
        return session, handle

    def _forget(self, session: tuple[int, int]) -> None:
        with self._lock:
            if self._session == session:
                self._session = None

    def _message(self, body: Mapping[str, Any], what: str, *, hidden: Iterable[str | None] = ()) -> Mapping[str, Any]:
        """Send a synchronous videoroom request; its answer's data, or the translated error."""
        hidden = tuple(hidden)
        for attempt in (1, 2):
            session = self._handle()
            try:
                reply = self._post(f"{self.url}/{session[0]}/{session[1]}", {"janus": "message", "body": body},
                                   what, hidden=hidden)
            except BridgeError as exc:
                if exc.janus_code not in SESSION_GONE or attempt == 2:
                    raise
                # The bridge reaped the idle session or restarted: nothing was done, so ask again on a new one.
                log.info("bridge %s: session gone (%s); opening a new one", self.name, exc.janus_code)
                self._forget(session)
                continue
            data = self._parsed(what, partial(plugin_data, reply))
            refused = plugin_error(data)
            if refused is not None:
                raise self._janus_error(what, *refused, hidden=hidden)
            return data
        raise AssertionError("unreachable")  # pragma: no cover

    # -- the wire -----------------------------------------------------------------------------------------------
    def _post(self, url: str, body: Mapping[str, Any], what: str, *, base: str | None = None,
              hidden: Iterable[str | None] = ()) -> Mapping[str, Any]:
        """POST a Janus request; the reply, or the bridge's failure translated (never naming a secret)."""
        hidden = (*hidden, self.__admin_secret)
        where_to = where(base or url)
        transaction = secrets.token_hex(8)
        request = urllib.request.Request(  # noqa: S310 - the scheme is checked (http/https) in __init__
            url, data=json.dumps({**body, "transaction": transaction}).encode(), method="POST",
            headers={"Content-Type": "application/json", "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310
                raw = response.read(MAX_REPLY_BYTES + 1)
        except urllib.error.HTTPError as exc:
            exc.close()
            reason = f"HTTP {exc.code} {exc.reason}"
            if exc.code in (502, 503, 504):
                raise BridgeUnreachable(f"{what} on bridge {where_to}: {reason}") from None
            raise BridgeError(exc.code, reason, message=f"{what} on bridge {where_to}: {reason}") from None
        except TimeoutError as exc:
            raise BridgeUnreachable(f"{what} on bridge {where_to}: no answer within {self.timeout:g} s") from exc
        except (urllib.error.URLError, OSError) as exc:
            cause = getattr(exc, "reason", exc)
            detail = f"no answer within {self.timeout:g} s" if isinstance(cause, TimeoutError) else (
                getattr(cause, "strerror", None) or type(cause).__name__)
            raise BridgeUnreachable(f"{what} on bridge {where_to}: {scrub(str(detail), hidden)}") from None
        if len(raw) > MAX_REPLY_BYTES:
            raise BridgeFailure(f"{what} on bridge {where_to}: the answer is larger than {MAX_REPLY_BYTES} bytes")
        try:
            reply = json.loads(raw)
        except ValueError:
            raise BridgeFailure(f"{what} on bridge {where_to}: the answer is not JSON") from None
        if not isinstance(reply, Mapping):
            raise BridgeFailure(f"{what} on bridge {where_to}: the answer is not a Janus reply")
        error = janus_error(reply)
        if error is not None:
            raise self._janus_error(what, *error, hidden=hidden, where_to=where_to)
        if reply.get("transaction") not in (None, transaction):
            raise BridgeFailure(f"{what} on bridge {where_to}: the answer is for another request")
        return reply

    def _janus_error(self, what: str, code: int, reason: str, *, hidden: Iterable[str | None],
                     where_to: str | None = None) -> BridgeError:
        reason = " ".join(scrub(reason, (*hidden, self.__admin_secret)).split())[:300]
        message = f"{what} on bridge {where_to or self.name}: Janus error {code}: {reason}"
        kind = {UNAUTHORIZED: BridgeAuthFailed, NO_SUCH_ROOM: RoomMissing, ROOM_EXISTS: RoomExists}.get(code,
                                                                                                       BridgeError)
        return kind(code, reason, message=message)

    def _parsed(self, what: str, parse: Callable[[], T]) -> T:
        try:
            return parse()
        except MalformedReply as exc:
            raise BridgeFailure(f"{what} on bridge {self.name}: unexpected answer ({exc})") from None
