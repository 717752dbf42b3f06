"""The room prober against real room endpoints (sipp answering SIP OPTIONS on loopback): rooms go up, a stopped
endpoint goes down within one cycle, only changes are written, the metrics count rooms by site, agency and state,
and the durable engine runs the cycles by itself. Endpoints outside the allowed networks are never sent to."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import missing
from conftest import error_body
from engine import engine_settings
from sip_peers import SippPeer, free_udp_port, sipp_path, sipp_peers, stop_sipp
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from controlplane.auth import service as auth_service
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.rooms import flows
from controlplane.rooms.models import RoomEvent

API = "/api/v1/vc"


def _catalogue(directory: Path, endpoints: dict[str, tuple[str, int]]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rooms = "".join(f"""- code: {code}
  name: room {code}
  site: {"test-complex" if i % 2 == 0 else "lg-test"}
  agency: {"MOIS" if i % 2 == 0 else "JEJU"}
  building: "1"
  floor: 1
  capacity: 10
  endpoint: {{uri: "sip:{code}@vc.test", address: {host}, port: {port}}}
""" for i, (code, (host, port)) in enumerate(endpoints.items()))
    (directory / "catalogue.yml").write_text(f"""version: 1
sites:
- {{code: test-complex, name: test, kind: complex, region: sejong, address: here}}
- {{code: lg-test, name: test lg, kind: local_government, region: jeju, address: there}}
rooms:
{rooms}""")
    return directory


@pytest.fixture
def peers(tmp_path: Path) -> Iterator[list[SippPeer]]:
    if sipp_path() is None:
        missing("sipp", "/usr/bin/sipp is not installed")
    with sipp_peers(3, tmp_path / "sipp") as running:
        yield running


@pytest.fixture
def settings(database_url: str, tmp_path: Path, peers: list[SippPeer], engine_on: bool) -> Iterator[Settings]:
    endpoints = {f"room-{i}": (peer.host, peer.port) for i, peer in enumerate(peers)}
    endpoints["room-closed"] = ("127.0.0.1", free_udp_port())
    endpoints["room-elsewhere"] = ("127.9.9.9", 5060)  # the allowed networks narrow below: never sent to
    base = Settings(env="test", database_url=database_url, data_dir=tmp_path, metrics_refresh_seconds=3600,
                    rooms_catalogue_dir=_catalogue(tmp_path / "rooms", endpoints),
                    rooms_allowed_networks="127.0.0.0/8", rooms_probe_seconds=1, rooms_probe_timeout=0.5,
                    rooms_stream_seconds=1)
    with engine_settings(base, tmp_path, on=engine_on) as with_engine:
        yield with_engine


@pytest.fixture
def operator(client: TestClient, sessions: sessionmaker[Session], clock: Any, login: Any) -> dict[str, str]:
    with transaction(sessions) as s:
        auth_service.seed_agencies(s, clock=clock, actor="test")
    headers: dict[str, str] = login("op1", "operator")
    assert client.post(f"{API}/catalogue/sync", headers=headers).status_code == 200
    return headers


def _states(client: TestClient, headers: dict[str, str]) -> dict[str, str]:
    return {r["code"]: r["state"] for r in client.get(f"{API}/rooms", headers=headers).json()}


@pytest.mark.parametrize("engine_on", [False])
def test_a_cycle_finds_rooms_up_and_a_stopped_endpoint_down_writing_only_the_changes(
        client: TestClient, operator: dict[str, str], peers: list[SippPeer], sessions: sessionmaker[Session]) -> None:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    # The networks narrowed since the catalogue was synced: a room outside them is not probed (an error, not down).
    ctx.settings = ctx.settings.model_copy(update={"rooms_allowed_networks": "127.0.0.1/32"})
    summary = flows.run_probe_cycle(ctx)
    assert summary.rooms == 5 and summary.results == {"ok": 3, "down": 1, "error": 1}
    states = _states(client, operator)
    assert states == {"room-0": "up", "room-1": "up", "room-2": "up", "room-closed": "down",
                      "room-elsewhere": "unknown"}
    room = client.get(f"{API}/rooms/room-0", headers=operator).json()
    assert room["last_rtt_ms"] > 0 and room["events"][0]["kind"] == "state"
    assert (room["events"][0]["before"], room["events"][0]["after"]) == ("unknown", "up")

    with transaction(sessions) as s:
        events = s.scalar(select(func.count()).select_from(RoomEvent))
    again = flows.run_probe_cycle(ctx)
    assert again.changes == []
    with transaction(sessions) as s:  # nothing changed, nothing written
        assert s.scalar(select(func.count()).select_from(RoomEvent)) == events

    stop_sipp(peers[1])
    assert flows.run_probe_cycle(ctx).changes == [("room-1", "up", "down")]
    down = client.get(f"{API}/rooms/room-1", headers=operator).json()
    assert down["state"] == "down" and down["last_result"] in ("timeout", "port unreachable (ICMP)")

    metrics = client.get("/metrics").text
    assert 'controlplane_rooms{agency="MOIS",site="test-complex",state="up"} 2.0' in metrics
    assert 'controlplane_rooms{agency="JEJU",site="lg-test",state="down"} 2.0' in metrics
    assert 'controlplane_room_probes_total{result="error"} 3.0' in metrics
    assert 'controlplane_room_probe_rtt_seconds_count{site="test-complex"}' in metrics
    assert "room-0" not in metrics  # never a room as a label

    # The changes as a live page follows them: from an event id on, each state change, then (a second later) the
    # end that makes the client reconnect with Last-Event-ID.
    stream = client.get(f"{API}/rooms/changes/stream", headers=operator, params={"after": 0}).text
    changes = [json.loads(line[6:]) for line in stream.splitlines() if line.startswith("data: {\"id\"")]
    assert [(c["room"], c["after"]) for c in changes][-1] == ("room-1", "down")
    assert {c["room"] for c in changes} == {"room-0", "room-1", "room-2", "room-closed"}
    assert stream.rstrip().endswith('event: end\ndata: {"reconnect": true}')
    resumed = client.get(f"{API}/rooms/changes/stream", headers={**operator, "Last-Event-ID": str(changes[-2]["id"])})
    assert [json.loads(line[6:])["room"] for line in resumed.text.splitlines()
            if line.startswith("data: {\"id\"")] == ["room-1"]
    error_body(client.get(f"{API}/rooms/changes/stream"), 401)


def test_the_engine_probes_every_period_and_a_stopped_endpoint_shows_down_within_a_cycle(
        client: TestClient, operator: dict[str, str], peers: list[SippPeer]) -> None:
    deadline = time.monotonic() + 20
    while _states(client, operator).get("room-2") != "up":
        assert time.monotonic() < deadline, _states(client, operator)
        time.sleep(0.2)
    stop_sipp(peers[2])
    stopped = time.monotonic()
    while _states(client, operator)["room-2"] != "down":
        assert time.monotonic() - stopped < 10, "not down within a few cycles"
        time.sleep(0.2)
