"""The bridge client (controlplane.rooms.janus.JanusBridge) against a real Janus (Debian's), run by LocalJanus on
127.0.0.1: rooms, participants, load, the admin API, failures and their errors, secrets kept out of messages,
and a new session after Janus restarts."""

from __future__ import annotations

import contextlib
import itertools
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest
from components import missing

from controlplane.rooms.janus import (
    BridgeAuthFailed,
    BridgeError,
    BridgeFailure,
    BridgeInfo,
    BridgeLoad,
    BridgeRoom,
    BridgeUnreachable,
    JanusBridge,
    RoomExists,
    RoomMissing,
)
from controlplane.rooms.janus_local import JANUS, LocalJanus

ADMIN_SECRET = "admin-secret-Zq81"
ROOM_SECRET = "room-secret-Kp27"
PIN = "pin-4471"
SECRETS = (ADMIN_SECRET, ROOM_SECRET, PIN)
_numbers = itertools.count(1001)


def _local(directory: Path) -> LocalJanus:
    if not JANUS.exists():
        missing("janus", f"{JANUS} is not installed")
    return LocalJanus(directory / "conf", directory / "janus.log", admin_secret=ADMIN_SECRET,
                      rtp_port_range=(41000, 41099))


@pytest.fixture(scope="module")
def janus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalJanus]:
    with _local(tmp_path_factory.mktemp("janus")) as local:
        yield local


@pytest.fixture
def bridge(janus: LocalJanus) -> Iterator[JanusBridge]:
    with janus.client(timeout=2) as client:
        yield client


@pytest.fixture
def new_room(bridge: JanusBridge) -> Iterator[Callable[..., int]]:
    """Makes rooms with numbers of their own, and destroys those still there afterwards."""
    made: list[int] = []

    def make(*, description: str = "test room", pin: str | None = None, publishers: int = 4) -> int:
        room = next(_numbers)
        bridge.create_room(room, description=description, secret=ROOM_SECRET, pin=pin, publishers=publishers)
        made.append(room)
        return room

    yield make
    for room in made:
        with contextlib.suppress(RoomMissing):
            bridge.destroy_room(room, secret=ROOM_SECRET)


def _room(bridge: JanusBridge, number: int) -> BridgeRoom | None:
    return next((room for room in bridge.list_rooms() if room.room == number), None)


def test_info_names_the_version_and_the_videoroom(bridge: JanusBridge) -> None:
    info = bridge.info()
    assert info == BridgeInfo(version="1.1.2", up=True, session_timeout=60, videoroom=True)


def test_a_started_bridge_has_no_rooms_and_listens_on_loopback_only(janus: LocalJanus, bridge: JanusBridge) -> None:
    # The stock videoroom configuration's rooms 1234 and 5678 are gone; the tests' rooms are destroyed after each.
    assert bridge.list_rooms() == []
    assert bridge.load() == BridgeLoad(rooms=0, participants=0)
    assert janus.pid is not None
    listening = {conn.laddr for conn in psutil.Process(janus.pid).net_connections(kind="inet")
                 if conn.status == psutil.CONN_LISTEN}
    assert listening == {("127.0.0.1", janus.http_port), ("127.0.0.1", janus.admin_port)}


def test_create_lists_the_room_and_a_second_create_says_it_exists(bridge: JanusBridge,
                                                                  new_room: Callable[..., int]) -> None:
    room = new_room(description="Sejong 3F 영상회의실", publishers=6)
    assert _room(bridge, room) == BridgeRoom(room=room, description="Sejong 3F 영상회의실", max_publishers=6,
                                             participants=0, pin_required=False)
    with pytest.raises(RoomExists) as raised:
        bridge.create_room(room, description="twin", secret=ROOM_SECRET, pin=None, publishers=2)
    assert raised.value.janus_code == 427
    assert f"create room {room}" in str(raised.value) and bridge.name in str(raised.value)
    assert _room(bridge, room) == BridgeRoom(room=room, description="Sejong 3F 영상회의실", max_publishers=6,
                                             participants=0, pin_required=False)


def test_a_room_with_a_pin_says_so(bridge: JanusBridge, new_room: Callable[..., int]) -> None:
    room = new_room(pin=PIN)
    assert _room(bridge, room) == BridgeRoom(room=room, description="test room", max_publishers=4, participants=0,
                                             pin_required=True)


def test_edit_changes_description_publishers_and_pin(bridge: JanusBridge, new_room: Callable[..., int]) -> None:
    room = new_room(description="before", publishers=3)
    bridge.edit_room(room, secret=ROOM_SECRET, description="after", publishers=9, pin=PIN)
    assert _room(bridge, room) == BridgeRoom(room=room, description="after", max_publishers=9, participants=0,
                                             pin_required=True)
    bridge.edit_room(room, secret=ROOM_SECRET, publishers=2)  # what is not given stays
    assert _room(bridge, room) == BridgeRoom(room=room, description="after", max_publishers=2, participants=0,
                                             pin_required=True)
    with pytest.raises(BridgeError) as raised:
        bridge.edit_room(room, secret="not-the-secret", description="x")
    assert raised.value.janus_code == 433
    with pytest.raises(RoomMissing):
        bridge.edit_room(next(_numbers), secret=ROOM_SECRET, description="x")


def test_participants_of_an_empty_room_and_of_none(bridge: JanusBridge, new_room: Callable[..., int]) -> None:
    room = new_room()
    assert bridge.participants(room) == []
    with pytest.raises(RoomMissing) as raised:
        bridge.participants(next(_numbers))
    assert raised.value.janus_code == 426


def test_load_counts_rooms_and_participants(bridge: JanusBridge, new_room: Callable[..., int]) -> None:
    before = bridge.load()
    new_room()
    new_room()
    assert bridge.load() == BridgeLoad(rooms=before.rooms + 2, participants=before.participants)


def test_destroy_needs_the_secret_and_a_room(bridge: JanusBridge, new_room: Callable[..., int]) -> None:
    room = new_room()
    with pytest.raises(BridgeError) as raised:
        bridge.destroy_room(room, secret="not-the-secret")
    assert type(raised.value) is BridgeError
    assert raised.value.janus_code == 433  # the videoroom's "unauthorized"
    assert _room(bridge, room) is not None
    bridge.destroy_room(room, secret=ROOM_SECRET)
    assert _room(bridge, room) is None
    with pytest.raises(RoomMissing) as missing_room:
        bridge.destroy_room(room, secret=ROOM_SECRET)
    assert missing_room.value.janus_code == 426
    assert isinstance(missing_room.value, BridgeFailure)


def test_admin_check_wants_the_admin_secret(janus: LocalJanus) -> None:
    janus.client(timeout=2).admin_check()
    wrong = JanusBridge(janus.url, janus.admin_url, "not-the-admin-secret", timeout=2)
    with pytest.raises(BridgeAuthFailed) as raised:
        wrong.admin_check()
    assert raised.value.janus_code == 403
    assert "admin check" in str(raised.value) and "not-the-admin-secret" not in str(raised.value)


def test_secrets_stay_out_of_reprs_and_errors(janus: LocalJanus, bridge: JanusBridge,
                                              new_room: Callable[..., int]) -> None:
    room = new_room(pin=PIN)
    failures: list[BaseException] = []
    for attempt in (
        lambda: bridge.create_room(room, description="x", secret=ROOM_SECRET, pin=PIN, publishers=2),
        lambda: bridge.edit_room(room, secret=PIN, pin=ROOM_SECRET),
        lambda: bridge.destroy_room(room, secret=ADMIN_SECRET),
        lambda: bridge.destroy_room(next(_numbers), secret=ROOM_SECRET),
        lambda: JanusBridge(janus.url, janus.admin_url, ROOM_SECRET, timeout=2).admin_check(),
        lambda: JanusBridge("http://127.0.0.1:9/janus", janus.admin_url, ADMIN_SECRET, timeout=2).info(),
    ):
        with pytest.raises(BridgeFailure) as raised:
            attempt()
        failures.append(raised.value)
    texts = [repr(bridge), str(bridge), repr(janus), *(str(exc) for exc in failures),
             *(repr(exc) for exc in failures), *(getattr(exc, "reason", "") for exc in failures)]
    for text in texts:
        for secret in SECRETS:
            assert secret not in text
    assert ADMIN_SECRET not in janus.log_file.read_text(errors="replace")


def test_a_stopped_bridge_is_unreachable_at_once(tmp_path: Path) -> None:
    local = _local(tmp_path)
    with local:
        client = local.client(timeout=2)
        assert client.list_rooms() == []
    assert local.pid is None
    started = time.monotonic()
    with pytest.raises(BridgeUnreachable) as raised:
        client.list_rooms()
    assert time.monotonic() - started < 1
    assert "list rooms" in str(raised.value) and client.name in str(raised.value)
    with pytest.raises(BridgeUnreachable):
        client.info()


def test_a_bridge_that_does_not_answer_times_out(janus: LocalJanus) -> None:
    # A socket that is listened on but never read: the connection is made, no answer ever comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        client = JanusBridge(f"http://127.0.0.1:{port}/janus", f"http://127.0.0.1:{port}/admin", ADMIN_SECRET,
                             timeout=0.3)
        started = time.monotonic()
        with pytest.raises(BridgeUnreachable) as raised:
            client.info()
        assert time.monotonic() - started < 1.5
        assert "no answer within 0.3 s" in str(raised.value)


def test_the_client_opens_a_new_session_after_janus_restarts(tmp_path: Path) -> None:
    local = _local(tmp_path)
    with local:
        client = local.client(timeout=2)
        client.create_room(7, description="before", secret=ROOM_SECRET, pin=None, publishers=2)
        first_session = client._session
        local.stop()
        local.start()
        # The room lived in the old Janus's memory only (permanent: false): the control plane reconciles.
        assert client.list_rooms() == []
        assert client._session is not None and client._session != first_session
        client.create_room(7, description="after", secret=ROOM_SECRET, pin=None, publishers=2)
        assert [room.description for room in client.list_rooms()] == ["after"]
        client.close()
