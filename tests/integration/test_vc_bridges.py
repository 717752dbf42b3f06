"""The bridges and their rooms, reconciled against two real Janus bridges on loopback: every room that needs one
gets a persistent video room on the least-loaded bridge; a room destroyed behind the control plane's back comes
back at the next reconcile; a room the control plane did not make is reported and left alone; a bridge that stops
answering is drained (its rooms move to the other, as far as its capacity goes) and the rooms nobody can hold are
counted. Secrets are sealed at rest and never returned. Over the API the reconcile is durable work."""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from components import missing
from conftest import error_body
from engine import engine_settings
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from starlette.testclient import TestClient

from controlplane.auth import service as auth_service
from controlplane.auth.models import AuditEntry
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.rooms import reconcile, service
from controlplane.rooms.janus_local import LocalJanus
from controlplane.rooms.models import Bridge, BridgeRoom
from controlplane.secrets import secret_box

API = "/api/v1/vc"
JANUS = Path("/usr/bin/janus")
ROOMS = [f"room-{i}" for i in range(6)]


def _catalogue(directory: Path, bridge_capacity: int) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    rooms = "".join(f"""- code: {code}
  name: room {code} <b>
  site: test-complex
  agency: MOIS
  building: "1"
  floor: 1
  capacity: 8
  endpoint: {{uri: "sip:{code}@vc.test", address: 127.1.0.{i + 2}}}
""" for i, code in enumerate(ROOMS))
    (directory / "catalogue.yml").write_text(f"""version: 1
sites:
- {{code: test-complex, name: test, kind: complex, region: sejong, address: here}}
bridges:
- {{code: bridge-a, site: test-complex, server: vc-bridge-a, capacity: {{rooms: {bridge_capacity}, participants: 100}}}}
- {{code: bridge-b, site: test-complex, server: vc-bridge-b, capacity: {{rooms: {bridge_capacity}, participants: 100}}}}
rooms:
- code: no-bridge-room
  name: a room that needs none
  site: test-complex
  agency: MOIS
  building: "1"
  floor: 1
  capacity: 8
  bridge_room: false
  endpoint: {{uri: "sip:no-bridge-room@vc.test", address: 127.1.0.99}}
{rooms}""")
    return directory


@pytest.fixture
def admin_secrets() -> dict[str, str]:
    return {code: secrets.token_urlsafe(24) for code in ("bridge-a", "bridge-b")}


@pytest.fixture
def bridges(tmp_path: Path, admin_secrets: dict[str, str]) -> Iterator[dict[str, LocalJanus]]:
    if not JANUS.exists():
        missing("janus", "/usr/bin/janus is not installed")
    running: dict[str, LocalJanus] = {}
    try:
        for code, secret in admin_secrets.items():
            running[code] = LocalJanus(tmp_path / code, tmp_path / f"{code}.log", admin_secret=secret).start()
        yield running
    finally:
        for janus in running.values():
            janus.stop()


@pytest.fixture
def settings(database_url: str, tmp_path: Path, engine_on: bool) -> Iterator[Settings]:
    base = Settings(env="test", database_url=database_url, data_dir=tmp_path, metrics_refresh_seconds=3600,
                    rooms_catalogue_dir=_catalogue(tmp_path / "rooms", bridge_capacity=4),
                    rooms_allowed_networks="127.0.0.0/8", rooms_bridge_timeout=2, rooms_probe_seconds=1,
                    rooms_probe_timeout=0.3)
    with engine_settings(base, tmp_path, on=engine_on) as with_engine:
        yield with_engine


@pytest.fixture
def operator(client: TestClient, sessions: sessionmaker[Session], clock: Any, login: Any,
             bridges: dict[str, LocalJanus], admin_secrets: dict[str, str]) -> dict[str, str]:
    with transaction(sessions) as s:
        auth_service.seed_agencies(s, clock=clock, actor="test")
    headers: dict[str, str] = login("op1", "operator")
    assert client.post(f"{API}/catalogue/sync", headers=headers).status_code == 200
    for code, janus in bridges.items():
        response = client.put(f"{API}/bridges/{code}/endpoint", headers=headers, json={
            "address": "127.0.0.1", "http_port": janus.http_port, "admin_port": janus.admin_port,
            "admin_secret": admin_secrets[code]})
        assert response.status_code == 200, response.text
        assert response.json()["admin_secret_set"] is True
        assert admin_secrets[code] not in response.text
    return headers


def _on_bridges(bridges: dict[str, LocalJanus]) -> dict[str, set[int]]:
    result = {}
    for code, janus in bridges.items():
        with janus.client() as client:
            result[code] = {r.room for r in client.list_rooms()}
    return result


def _assigned(sessions: sessionmaker[Session]) -> dict[str, set[int]]:
    with transaction(sessions) as s:
        rows = s.execute(select(Bridge.code, BridgeRoom.number).join(BridgeRoom.bridge)).all()
    result: dict[str, set[int]] = {"bridge-a": set(), "bridge-b": set()}
    for code, number in rows:
        result[code].add(number)
    return result


@pytest.mark.parametrize("engine_on", [False])
def test_rooms_are_placed_recreated_when_destroyed_behind_our_back_and_drained_from_a_bridge_that_stops(
        client: TestClient, operator: dict[str, str], bridges: dict[str, LocalJanus],
        admin_secrets: dict[str, str], sessions: sessionmaker[Session]) -> None:
    ctx = client.app.state.ctx  # type: ignore[attr-defined]
    report = reconcile.reconcile(ctx)
    assert report.bridges == {"bridge-a": "up", "bridge-b": "up"} and report.unplaced == []
    assert len(report.created) == 6 and report.unknown == [] and report.destroyed == []
    assigned = _assigned(sessions)
    assert [len(v) for v in assigned.values()] == [3, 3]  # least loaded first: evenly spread
    assert _on_bridges(bridges) == assigned

    with transaction(sessions) as s:  # sealed at rest: the database holds no secret in clear
        row = s.scalars(select(BridgeRoom)).first()
        assert row is not None and "secret" not in row.secret_sealed and len(row.pin_sealed) > 40
        admin = s.scalars(select(Bridge.admin_secret_sealed)).first()
        assert admin and admin_secrets["bridge-a"] not in admin
        theirs = service.known_secrets(s, box=secret_box(ctx.settings))

    # Behind the control plane's back: one of its rooms destroyed, a stranger's room made.
    victim = min(assigned["bridge-a"])
    with bridges["bridge-a"].client() as janus:
        janus.destroy_room(victim, secret=theirs[victim])
        janus.create_room(4242, description="made by hand", secret="x" * 12, pin=None, publishers=2)
    again = reconcile.reconcile(ctx)
    assert again.created == [f"bridge-a: {_room_of(sessions, victim)} (room {victim})"]
    assert again.unknown == ["bridge-a: room 4242 (made by hand)"]
    assert _on_bridges(bridges)["bridge-a"] == assigned["bridge-a"] | {4242}  # the stranger's room stays

    # A bridge stops answering: it is down, and its rooms go to the other as far as its capacity (4) goes.
    bridges["bridge-a"].stop()
    drained = reconcile.reconcile(ctx)
    assert drained.bridges["bridge-a"].startswith("down: ") and drained.bridges["bridge-b"] == "up"
    assert len(drained.moved) == 1 and len(drained.unplaced) == 2
    assert len(_on_bridges({"bridge-b": bridges["bridge-b"]})["bridge-b"]) == 4
    metrics = client.get("/metrics").text
    assert 'controlplane_bridge_up{bridge="bridge-a"} 0.0' in metrics
    assert 'controlplane_bridge_rooms{bridge="bridge-b"} 4.0' in metrics
    assert "controlplane_bridge_rooms_unplaced 2.0" in metrics
    bridge_list = {b["code"]: b for b in client.get(f"{API}/bridges", headers=operator).json()}
    assert bridge_list["bridge-a"]["state"] == "down" and bridge_list["bridge-a"]["last_error"]

    # It comes back (empty, as a restarted Janus is): the unplaced rooms go there; the moved one stays moved.
    bridges["bridge-a"].start()
    back = reconcile.reconcile(ctx)
    assert back.bridges["bridge-a"] == "up" and back.unplaced == [] and len(back.moved) == 2
    assert sum(len(v) for v in _on_bridges(bridges).values()) == 6 + 0  # the stranger's room died with the restart
    assert _on_bridges(bridges) == _assigned(sessions)


def _room_of(sessions: sessionmaker[Session], number: int) -> str:
    with transaction(sessions) as s:
        from controlplane.rooms.models import Room

        return str(s.scalar(select(Room.code).join(BridgeRoom, BridgeRoom.room_id == Room.id)
                            .where(BridgeRoom.number == number)))


def test_an_operator_asks_for_a_reconcile_and_follows_it(client: TestClient, operator: dict[str, str],
                                                         login: Callable[..., dict[str, str]],
                                                         sessions: sessionmaker[Session]) -> None:
    ministry = login("min1", "ministry", "MOEF")
    error_body(client.post(f"{API}/reconcile", headers=ministry), 403)
    error_body(client.post(f"{API}/reconcile"), 401)
    queued = client.post(f"{API}/reconcile", headers=operator)
    assert queued.status_code == 202, queued.text
    reconcile_id = queued.json()["id"]
    deadline = time.monotonic() + 30
    while (row := client.get(f"{API}/reconcile/{reconcile_id}", headers=ministry).json())["state"] not in (
            "succeeded", "failed"):
        assert time.monotonic() < deadline, row
        time.sleep(0.2)
    assert row["state"] == "succeeded" and row["actor"] == "op1" and row["trigger"] == "operator"
    assert row["report"]["bridges"] == {"bridge-a": "up", "bridge-b": "up"}
    assert reconcile_id in {r["id"] for r in client.get(f"{API}/reconcile", headers=ministry).json()}
    error_body(client.get(f"{API}/reconcile/nope", headers=ministry), 404, field="reconcile")
    with transaction(sessions) as s:
        audits = s.scalars(select(AuditEntry).where(AuditEntry.entity_type.in_(["bridge", "bridges"]))).all()
        assert sorted((a.action, a.entity_id) for a in audits) == [
            ("reconcile", reconcile_id), ("register", "bridge-a"), ("register", "bridge-b")]
        assert all((a.after or {}).get("admin_secret", "(set)") == "(set)" for a in audits)


@pytest.mark.parametrize("engine_on", [False])
def test_a_bridge_endpoint_must_be_an_address_in_the_allowed_networks(client: TestClient,
                                                                      operator: dict[str, str]) -> None:
    url = f"{API}/bridges/bridge-a/endpoint"
    body = {"address": "169.254.169.254", "admin_secret": "s" * 20}
    error_body(client.put(url, headers=operator, json=body), 422, field="address")
    error_body(client.put(url, headers=operator, json=body | {"address": "bridge.example"}), 422, field="address")
    error_body(client.put(url, headers=operator, json=body | {"address": "127.0.0.1", "admin_secret": "short"}),
               422, field="admin_secret")
    error_body(client.put(f"{API}/bridges/nope/endpoint", headers=operator, json=body | {"address": "127.0.0.1"}),
               404, field="bridge")


def test_the_probes_find_a_bridge_that_stops_answering_and_it_is_drained_at_once(
        client: TestClient, operator: dict[str, str], bridges: dict[str, LocalJanus],
        sessions: sessionmaker[Session]) -> None:
    """Between scheduled reconciles (every 5 minutes by default) the probe cycles ask the bridges too: a bridge
    that stops answering is down within a cycle, and the reconcile it sets off moves its rooms."""
    def placed() -> dict[str, set[int]]:
        return _assigned(sessions)

    deadline = time.monotonic() + 30
    while sum(len(v) for v in placed().values()) < len(ROOMS):  # the first cycle saw them up: rooms placed
        assert time.monotonic() < deadline, placed()
        time.sleep(0.2)
    busy = max(placed(), key=lambda code: len(placed()[code]))
    bridges[busy].stop()
    stopped = time.monotonic()
    while placed()[busy]:
        assert time.monotonic() - stopped < 30, placed()
        time.sleep(0.2)
    states = {b["code"]: b["state"] for b in client.get(f"{API}/bridges", headers=operator).json()}
    assert states[busy] == "down"
    reconciles = client.get(f"{API}/reconcile", headers=operator).json()
    assert any(r["actor"] == "prober" and r["state"] == "succeeded" for r in reconciles), reconciles
