"""The VC network's catalogue (rooms/): the seed at the real scale synced over HTTP and the command line, idempotent,
with its diff; rooms that leave the files retired with their history; bad files refused with file, line and reason
and nothing changed; rooms listed with their state, taken out of service (audited) by operators only."""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import error_body
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from controlplane.auth import service as auth_service
from controlplane.auth.models import AuditEntry
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.rooms.models import Room, RoomEvent

API = "/api/v1/vc"
SEED = Path(__file__).resolve().parents[2] / "rooms"


@pytest.fixture
def agencies(sessions: sessionmaker[Session], clock: Any) -> None:
    with transaction(sessions) as s:
        auth_service.seed_agencies(s, clock=clock, actor="test")


@pytest.fixture
def rooms_dir(tmp_path: Path) -> Path:
    """A copy of the seed catalogue the test may edit."""
    return Path(shutil.copytree(SEED, tmp_path / "rooms"))


@pytest.fixture
def settings(database_url: str, tmp_path: Path, rooms_dir: Path) -> Settings:
    return Settings(env="test", database_url=database_url, data_dir=tmp_path, metrics_refresh_seconds=3600,
                    rooms_catalogue_dir=rooms_dir)


@pytest.fixture
def operator(client: Any, agencies: None, login: Callable[..., dict[str, str]]) -> dict[str, str]:
    return login("op1", "operator")


def _sync(client: Any, headers: dict[str, str], *, dry_run: bool = False) -> dict[str, Any]:
    response = client.post(f"{API}/catalogue/sync", headers=headers, params={"dry_run": dry_run})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _rooms(client: Any, headers: dict[str, str], **params: Any) -> list[dict[str, Any]]:
    response = client.get(f"{API}/rooms", headers=headers, params=params)
    assert response.status_code == 200, response.text
    rooms: list[dict[str, Any]] = response.json()
    return rooms


def test_the_seed_catalogue_syncs_at_real_scale_once_and_then_changes_nothing(
        client: Any, operator: dict[str, str], sessions: sessionmaker[Session]) -> None:
    planned = _sync(client, operator, dry_run=True)
    assert planned["applied"] is False
    assert planned["summary"] == {"site added": 44, "room added": 273, "bridge added": 2}
    assert _rooms(client, operator) == []  # a dry run writes nothing

    applied = _sync(client, operator)
    assert applied["summary"] == planned["summary"] and applied["digest"] == planned["digest"]
    assert "+ room seoul-1-100: add" in applied["changes"]
    rooms = _rooms(client, operator)
    assert len(rooms) == 273 and {r["state"] for r in rooms} == {"unknown"}
    complexes = {r["site"] for r in rooms if r["site"].endswith("-complex")}
    assert complexes == {"seoul-complex", "sejong-complex", "gwacheon-complex", "daejeon-complex"}
    assert len({r["agency"] for r in rooms if r["site"].startswith("lg-")}) == 17

    centres = client.get(f"{API}/centres", headers=operator).json()
    assert len(centres) == 18
    assert sum(1 for c in centres if sum(c["rooms"].values())) == 14
    assert all(c["seats"] and c["opening_hours"] for c in centres)

    again = _sync(client, operator)
    assert again["changes"] == [] and again["summary"] == {}
    with transaction(sessions) as s:
        syncs = s.scalars(select(AuditEntry).where(AuditEntry.entity_type == "room_catalogue")).all()
        assert [(a.action, a.actor, a.after) for a in syncs] == [
            ("sync", "op1", {"site added": 44, "room added": 273, "bridge added": 2})]


def test_a_room_that_leaves_the_files_is_retired_with_its_history_and_restored_when_it_comes_back(
        client: Any, operator: dict[str, str], rooms_dir: Path, sessions: sessionmaker[Session]) -> None:
    _sync(client, operator)
    path = rooms_dir / "rooms" / "smart-work-centres.yml"
    original = path.read_text()
    entry = re.search(r"(?ms)^- code: swc-dobong-vc\n.*?(?=^- code:)", original)
    assert entry is not None
    path.write_text(original.replace(entry.group(0), ""))
    changed = _sync(client, operator)
    assert changed["changes"] == ["- room swc-dobong-vc: retire"]
    assert "swc-dobong-vc" not in {r["code"] for r in _rooms(client, operator)}
    retired = _rooms(client, operator, retired=True)
    assert [r["code"] for r in retired] == ["swc-dobong-vc"] and retired[0]["retired_at"]
    detail = client.get(f"{API}/rooms/swc-dobong-vc", headers=operator).json()
    assert [e["after"] for e in detail["events"]] == ["retire", "add"]

    path.write_text(original.replace("capacity: 10\n", "capacity: 11\n", 1) if "capacity: 10\n" in original
                    else original)
    restored = _sync(client, operator)
    assert "+ room swc-dobong-vc: restore" in restored["changes"]
    assert "swc-dobong-vc" in {r["code"] for r in _rooms(client, operator)}
    with transaction(sessions) as s:  # one row throughout: retired and restored, never deleted and made anew
        assert s.scalar(select(func.count()).select_from(Room).where(Room.code == "swc-dobong-vc")) == 1
        assert s.scalar(select(func.count()).select_from(RoomEvent)) >= 273 + 2


def test_a_changed_room_is_updated_with_the_fields_that_changed(client: Any, operator: dict[str, str],
                                                                 rooms_dir: Path) -> None:
    _sync(client, operator)
    path = rooms_dir / "rooms" / "local-governments.yml"
    text = path.read_text()
    start = text.index("- code: lg-jeju-1\n")
    end = text.index("- code:", start + 5)
    block = text[start:end]
    changed_block = re.sub(r"capacity: \d+", "capacity: 99", block).replace("floor:", "floor: 7 #", 1)
    path.write_text(text[:start] + changed_block + text[end:])
    changes = _sync(client, operator)["changes"]
    assert changes == ["~ room lg-jeju-1: change (floor, capacity)"]
    room = client.get(f"{API}/rooms/lg-jeju-1", headers=operator).json()
    assert (room["capacity"], room["floor"]) == (99, 7)


BAD_FILES = {
    "duplicate": ("""version: 1
rooms:
- {code: seoul-1-100, name: again, site: seoul-complex, agency: MOIS, building: b, floor: 1, capacity: 4,
   endpoint: {uri: "sip:dup@vc.korea.kr", address: 127.1.1.1}}
""", "zz-bad.yml", 3, "rooms[0].code", "duplicate code 'seoul-1-100' (first at rooms/rooms/seoul-complex.yml:"),
    "unknown site": ("""version: 1
rooms:
- code: nowhere-1
  name: a room
  site: atlantis
  agency: MOIS
  building: b
  floor: 1
  capacity: 4
  endpoint: {uri: "sip:nowhere-1@vc.korea.kr", address: 127.1.1.2}
""", "zz-bad.yml", 5, "rooms[0].site", "unknown site 'atlantis'"),
    "bad address": ("""version: 1
rooms:
- code: nowhere-2
  name: a room
  site: seoul-complex
  agency: MOIS
  building: b
  floor: 1
  capacity: 4
  endpoint:
    uri: "sip:nowhere-2@vc.korea.kr"
    address: metadata.internal
""", "zz-bad.yml", 10, "rooms[0].endpoint.address", "'metadata.internal' is not an IP address"),
    "outside the allowed networks": ("""version: 1
rooms:
- code: nowhere-3
  name: a room
  site: seoul-complex
  agency: MOIS
  building: b
  floor: 1
  capacity: 4
  endpoint: {uri: "sip:nowhere-3@vc.korea.kr", address: 169.254.169.254}
""", "zz-bad.yml", 10, "rooms[0].endpoint.address", "169.254.169.254 is outside the allowed networks (127.0.0.0/8"),
    "alias": ("""version: 1
sites:
- &s {code: x-site, name: x, kind: complex, region: seoul, address: x}
- *s
""", "zz-bad.yml", 3, "file", "YAML anchors and aliases are not allowed"),
    "unknown agency": ("""version: 1
rooms:
- code: nowhere-4
  name: a room
  site: seoul-complex
  agency: NOPE
  building: b
  floor: 1
  capacity: 4
  endpoint: {uri: "sip:nowhere-4@vc.korea.kr", address: 127.1.1.4}
""", "zz-bad.yml", 6, "rooms[0].agency", "unknown agency 'NOPE'"),
    "not yaml": ("version: 1\nrooms: [\n", "zz-bad.yml", 3, "file", "not valid YAML"),
    "wrong version": ("version: 2\nsites: []\n", "zz-bad.yml", 1, "version", "must be 1"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_a_bad_catalogue_file_is_refused_with_file_line_and_reason_and_nothing_changes(
        case: str, client: Any, operator: dict[str, str], rooms_dir: Path) -> None:
    _sync(client, operator)
    (rooms_dir / "sites.yml").write_text((rooms_dir / "sites.yml").read_text().replace(
        "name: 정부과천청사", "name: 정부과천청사 (renamed)"))  # a good change beside the bad file: not applied
    content, file, line, field, reason = BAD_FILES[case]
    (rooms_dir / "rooms" / "zz-bad.yml").write_text(content)
    body = error_body(client.post(f"{API}/catalogue/sync", headers=operator), 422, field="catalogue")
    assert "nothing was changed" in body["message"]
    finding = body["details"][0]
    assert (finding["file"], finding["line"], finding["field"]) == (f"rooms/rooms/{file}", line, field), body
    assert finding["reason"].startswith(reason) or reason in finding["reason"], body
    sites = client.get(f"{API}/sites", headers=operator).json()
    assert next(s["name"] for s in sites if s["code"] == "gwacheon-complex") == "정부과천청사"


def test_rooms_are_listed_by_site_agency_region_and_state_and_taken_out_of_service_by_operators_only(
        client: Any, operator: dict[str, str], login: Callable[..., dict[str, str]],
        sessions: sessionmaker[Session]) -> None:
    _sync(client, operator)
    secretariat = login("sec1", "secretariat", "MOIS")
    ministry = login("min1", "ministry", "MOEF")
    assert {r["site"] for r in _rooms(client, secretariat, site="lg-busan")} == {"lg-busan"}
    assert {r["agency"] for r in _rooms(client, ministry, agency="MOEF")} == {"MOEF"}
    assert {r["region"] for r in _rooms(client, ministry, region="jeju")} == {"jeju"}
    error_body(client.get(f"{API}/rooms", headers=ministry, params={"state": "sideways"}), 422, field="state")
    error_body(client.get(f"{API}/rooms", headers=ministry, params={"site": "../etc"}), 422, field="site")

    code = _rooms(client, operator, site="sejong-complex")[0]["code"]
    url = f"{API}/rooms/{code}/out-of-service"
    for caller in (secretariat, ministry):
        error_body(client.post(url, headers=caller, json={"reason": "x"}), 403)
    error_body(client.post(url, json={"reason": "x"}), 401)
    error_body(client.post(url, headers=operator, json={"reason": ""}), 422, field="reason")
    error_body(client.post(f"{API}/rooms/no-such-room/out-of-service", headers=operator, json={"reason": "x"}),
               404, field="room")
    room = client.post(url, headers=operator, json={"reason": "코덱 교체"})
    assert room.status_code == 200, room.text
    assert room.json()["state"] == "out_of_service" and room.json()["out_of_service"]["by"] == "op1"
    error_body(client.post(url, headers=operator, json={"reason": "again"}), 409, field="room")
    assert code in {r["code"] for r in _rooms(client, ministry, state="out_of_service")}
    back = client.post(f"{API}/rooms/{code}/in-service", headers=operator)
    assert back.status_code == 200 and back.json()["state"] == "unknown"
    with transaction(sessions) as s:
        audit = s.scalars(select(AuditEntry).where(AuditEntry.entity_type == "room")).all()
        assert [(a.action, a.actor, a.entity_id) for a in audit] == [("out_of_service", "op1", code),
                                                                     ("in_service", "op1", code)]
    detail = client.get(f"{API}/rooms/{code}", headers=ministry).json()
    assert [(e["kind"], e["after"], e["actor"]) for e in detail["events"][:2]] == [("service", "in", "op1"),
                                                                                 ("service", "out", "op1")]
    for caller in (secretariat, ministry):
        error_body(client.post(f"{API}/catalogue/sync", headers=caller), 403)
    error_body(client.get(f"{API}/rooms"), 401)


def test_bridges_are_listed_with_their_capacity_and_never_a_secret(client: Any, operator: dict[str, str],
                                                                    login: Callable[..., dict[str, str]]) -> None:
    _sync(client, operator)
    bridges = client.get(f"{API}/bridges", headers=login("aud1", "auditor")).json()
    assert [(b["code"], b["rooms_capacity"], b["participants_capacity"], b["state"]) for b in bridges] == [
        ("bridge-sejong-1", 200, 800, "unknown"), ("bridge-seoul-1", 200, 800, "unknown")]
    assert all(set(b) >= {"admin_secret_set"} and not any("secret" in k and k != "admin_secret_set" for k in b)
               for b in bridges)


# --- the command line ------------------------------------------------------------------------------------------


@pytest.fixture
def cli(settings: Settings, agencies: None, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[str, str]]:
    monkeypatch.setenv("CP_ENV", "test")
    monkeypatch.setenv("CP_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("CP_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CP_ROOMS_CATALOGUE_DIR", str(settings.rooms_catalogue_dir))
    monkeypatch.setenv("COLUMNS", "250")
    from controlplane.cli import app

    def run(*args: object, code: int = 0) -> tuple[str, str]:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == code, f"{result.output}\n{result.exception!r}"
        return result.stdout, result.stderr

    return run


def test_the_command_line_syncs_with_a_diff_and_names_each_bad_line(cli: Callable[..., tuple[str, str]],
                                                                   rooms_dir: Path) -> None:
    out, _ = cli("rooms", "sync", "--dry-run")
    assert out.splitlines()[-1].endswith("would change: 44 site added, 273 room added, 2 bridge added")
    out, _ = cli("rooms", "sync")
    assert "+ room lg-jeju-3: add" in out and out.splitlines()[-1].endswith(
        "applied: 44 site added, 273 room added, 2 bridge added")
    assert cli("rooms", "sync")[0].splitlines()[-1].endswith("applied: nothing to change")
    (rooms_dir / "rooms" / "zz-bad.yml").write_text(BAD_FILES["unknown site"][0] + BAD_FILES["bad address"][0]
                                                 .replace("version: 1\nrooms:\n", ""))
    _, err = cli("rooms", "sync", code=2)
    assert "error: catalogue: the catalogue is refused (2 problems); nothing was changed" in err
    assert "  rooms/rooms/zz-bad.yml:5: rooms[0].site: unknown site 'atlantis'" in err
    assert "  rooms/rooms/zz-bad.yml:18: rooms[1].endpoint.address: 'metadata.internal' is not an IP address" in err

    out, _ = cli("rooms", "out-of-service", "lg-jeju-1", "--reason", "정전")
    assert out.strip() == "room lg-jeju-1 is out of service: 정전"
    assert "out_of_service" in cli("rooms", "list", "--region", "jeju")[0]
    assert "(out of service: 정전)" in cli("rooms", "show", "lg-jeju-1")[0]
    _, err = cli("rooms", "list", "--state", "sideways", code=2)
    assert "error: state: must be one of up, down, unknown, out_of_service" in err
    _, err = cli("rooms", "show", "nowhere", code=2)
    assert "unknown room 'nowhere'" in err
    assert "bridge-sejong-1" in cli("bridges", "list")[0]
