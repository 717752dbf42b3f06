"""The catalogue's rules as pure functions: every bad field is a finding with its file, line and path; a sync is
the diff of what is in service, what is retired and what the files say."""

from __future__ import annotations

import ipaddress

import pytest

from controlplane.rooms.catalogue import read_entries
from controlplane.rooms.domain import Bridge, CatalogueRefused, build_catalogue, diff

NETWORKS = [ipaddress.ip_network("10.0.0.0/8")]


def _refused(text: str) -> list[str]:
    with pytest.raises(CatalogueRefused) as refused:
        build_catalogue(read_entries("f.yml", text.encode()), networks=NETWORKS, agencies=["MOIS"])
    return [str(f) for f in refused.value.findings]


def test_every_bad_field_of_every_entry_is_a_finding_in_line_order() -> None:
    assert _refused("""version: 1
centres:
- code: c1
  name: centre
  region: atlantis
  address: here
  seats: 0
  hours: "22:00-07:00"
  days: [mon, mon]
bridges:
- code: B1
  site: c1
  server: vc-bridge-1
  capacity: {rooms: 0, participants: 10}
""") == [
        "f.yml:5: centres[0].region: must be one of " + ", ".join(
            ["seoul", "busan", "daegu", "incheon", "gwangju", "daejeon", "ulsan", "sejong", "gyeonggi", "gangwon",
             "chungbuk", "chungnam", "jeonbuk", "jeonnam", "gyeongbuk", "gyeongnam", "jeju"]),
        "f.yml:7: centres[0].seats: must be a whole number from 1 to 1000",
        "f.yml:8: centres[0].hours: must end after it starts",
        "f.yml:9: centres[0].days: must be a list of distinct days among mon, tue, wed, thu, fri, sat, sun",
        "f.yml:11: bridges[0].code: must be 2-63 lower-case letters, digits or '-', starting with a letter or digit",
        "f.yml:14: bridges[0].capacity.rooms: must be a whole number from 1 to 10000",
    ]


def test_unknown_fields_and_sections_are_named_and_a_file_must_say_its_version() -> None:
    assert _refused("rooms:\n- {code: r1, colour: red}\nfloors: []\n")[:2] == [
        "f.yml:1: version: must be 1 (the catalogue's format)",
        "f.yml:3: floors: unknown section (known: version, sites, centres, rooms, bridges)"]
    findings = _refused("version: 1\nsites:\n- {code: s1, name: s, kind: complex, region: seoul, address: a, x: 1}\n")
    assert findings == ["f.yml:3: sites[0].x: unknown field (known: code, name, kind, region, address)"]


def test_control_characters_and_overlong_texts_are_refused() -> None:
    findings = _refused('version: 1\nsites:\n- {code: s1, name: "a\\u0007b", kind: complex, region: seoul, '
                        f'address: {"x" * 301}}}\n')
    assert findings == ["f.yml:3: sites[0].name: must not contain control characters",
                        "f.yml:3: sites[0].address: must be at most 300 characters"]


def test_a_sync_adds_changes_restores_and_retires() -> None:
    current = {"b1": Bridge("b1", "s", "srv-1", 10, 40), "b2": Bridge("b2", "s", "srv-2", 10, 40)}
    desired = [Bridge("b1", "s", "srv-1", 20, 40), Bridge("b3", "s", "srv-3", 10, 40),
               Bridge("b4", "s", "srv-4", 10, 40)]
    changes = diff("bridge", current, ["b4"], desired)
    assert [str(c) for c in changes] == ["~ bridge b1: change (rooms_capacity)", "+ bridge b3: add",
                                         "+ bridge b4: restore", "- bridge b2: retire"]
    assert diff("bridge", current, [], current.values()) == []
