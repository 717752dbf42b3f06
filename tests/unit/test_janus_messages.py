"""Janus's replies read into plain types, malformed ones refused, secrets scrubbed, and the .jcfg rewriting that
LocalJanus does (no Janus runs here)."""

from __future__ import annotations

import pickle

import pytest

from controlplane.rooms.janus import (
    BridgeError,
    BridgeInfo,
    BridgeLoad,
    BridgeRoom,
    BridgeUnreachable,
    MalformedReply,
    Participant,
    RoomExists,
    janus_error,
    load_of,
    parse_info,
    parse_participants,
    parse_rooms,
    plugin_data,
    plugin_error,
    scrub,
    where,
)
from controlplane.rooms.janus_local import jcfg_set, jcfg_string


def test_info() -> None:
    reply = {"janus": "server_info", "version": 1102, "version_string": "1.1.2", "session-timeout": 60,
             "plugins": {"janus.plugin.videoroom": {"version": 10}}}
    assert parse_info(reply) == BridgeInfo(version="1.1.2", up=True, session_timeout=60, videoroom=True)
    assert parse_info({"janus": "server_info", "version": 1102}) == BridgeInfo("1102", True, 0, False)
    with pytest.raises(MalformedReply):
        parse_info({"janus": "success"})


def test_rooms_sorted_with_their_counts() -> None:
    data = {"videoroom": "success", "list": [
        {"room": 20, "description": "Gwacheon", "pin_required": True, "max_publishers": 6, "num_participants": 2},
        {"room": 10, "description": "Seoul", "pin_required": False, "max_publishers": 3, "num_participants": 1},
    ]}
    rooms = parse_rooms(data)
    assert rooms == [BridgeRoom(10, "Seoul", 3, 1, False), BridgeRoom(20, "Gwacheon", 6, 2, True)]
    assert load_of(rooms) == BridgeLoad(rooms=2, participants=3)
    assert load_of([]) == BridgeLoad(rooms=0, participants=0)


@pytest.mark.parametrize("data", [{}, {"list": {}}, {"list": [1]}, {"list": [{"room": "10"}]},
                                  {"list": [{"room": True}]}, {"list": [{"room": 1, "num_participants": "2"}]}])
def test_malformed_room_lists_are_refused(data: dict[str, object]) -> None:
    with pytest.raises(MalformedReply):
        parse_rooms(data)


def test_participants() -> None:
    data = {"videoroom": "participants", "room": 10, "participants": [
        {"id": 123, "display": "Sejong", "publisher": True, "talking": True},
        {"id": "abc", "publisher": False},
    ]}
    assert parse_participants(data) == [Participant(123, "Sejong", True, True), Participant("abc", "", False, False)]
    with pytest.raises(MalformedReply):
        parse_participants({"participants": [{"id": None}]})


def test_errors_of_janus_and_of_the_videoroom() -> None:
    assert janus_error({"janus": "error", "error": {"code": 458, "reason": "No such session 1"}}) == (
        458, "No such session 1")
    assert janus_error({"janus": "error"}) == (0, "error without details")
    assert janus_error({"janus": "success"}) is None
    reply = {"janus": "success", "plugindata": {"plugin": "janus.plugin.videoroom",
                                                "data": {"videoroom": "event", "error_code": 427, "error": "exists"}}}
    assert plugin_error(plugin_data(reply)) == (427, "exists")
    assert plugin_error({"videoroom": "success", "list": []}) is None
    with pytest.raises(MalformedReply):
        plugin_data({"janus": "success"})


def test_scrub_and_where() -> None:
    assert scrub("secret ab and abc", ["ab", "abc", None, ""]) == "secret *** and ***"
    assert where("http://user:pw@10.0.0.5:8088/janus?x=1") == "10.0.0.5:8088"
    assert where("https://bridge.example/janus") == "bridge.example:443"
    assert where("http://[::1]:7088/admin") == "[::1]:7088"


def test_jcfg_set_replaces_adds_and_expands() -> None:
    text = 'general: {\n\tadmin_secret = "janusoverlord"\t# comment\n\t#admin_secret = "x"\n\tdebug_level = 4\n}\n' \
           "media: {}\n"
    text = jcfg_set(text, "general", {"admin_secret": jcfg_string('a"b\\c')})
    text = jcfg_set(text, "media", {"rtp_port_range": jcfg_string("20000-20099")})
    text = jcfg_set(text, "nat", {"ice_enforce_list": jcfg_string("10.99.0.1")})
    assert text == ('general: {\n\tadmin_secret = "a\\"b\\\\c"\n\t#admin_secret = "x"\n\tdebug_level = 4\n}\n'
                    'media: {\n\trtp_port_range = "20000-20099"\n}\n'
                    'nat: {\n\tice_enforce_list = "10.99.0.1"\n}\n')
    with pytest.raises(ValueError):
        jcfg_string("line\nbreak")


def test_errors_survive_pickling() -> None:
    """A durable step's failure is pickled; the error comes back whole, with Janus's code and the message."""
    exists = pickle.loads(pickle.dumps(RoomExists(427, "Room 7 already exists", "create room 7 on bridge h:1: ...")))
    assert type(exists) is RoomExists
    assert (exists.janus_code, exists.reason, str(exists)) == (427, "Room 7 already exists",
                                                               "create room 7 on bridge h:1: ...")
    assert exists.status_code == 409 and exists.code == "bridge_room_exists"
    assert str(BridgeError(433, "Unauthorized")) == "Janus error 433: Unauthorized"
    unreachable = pickle.loads(pickle.dumps(BridgeUnreachable("info on bridge h:1: Connection refused")))
    assert str(unreachable) == "info on bridge h:1: Connection refused"
