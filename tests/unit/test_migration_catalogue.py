"""The shipped catalogue and sample inventory, and inventory files in and out (controlplane.inventory.files)."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from controlplane.inventory import domain as inventory_domain
from controlplane.inventory import files, matching, planning
from controlplane.inventory.domain import (
    ROLES,
    CatalogueError,
    Component,
    ComponentKind,
    Grade,
    InventoryError,
    SystemStatus,
)
from controlplane.inventory.planning import DEVCLOUD_FLAVORS, Quota, Resources

REPO = Path(__file__).resolve().parents[2]
CATALOGUE = files.load_catalogue()
SAMPLE = files.load_sample_inventory()
BY_CODE = {s.code: s for s in SAMPLE}
UNLIMITED = Resources(inventory_domain.UNLIMITED, inventory_domain.UNLIMITED, inventory_domain.UNLIMITED)
# The deliberately unknown components of the sample (see the file's header).
FLAGGED = [
    ("mois-minwon", "components[4]", "unknown_component"),
    ("moef-edms", "components[4]", "unknown_component"),
    ("moef-stat", "components[1]", "unknown_version"),
    ("msit-spectrum", "components[4]", "unknown_component"),
    ("busan-minwon", "components[4]", "unknown_component"),
]


# --------------------------------------------------------------------------- catalogue


def test_the_catalogue_is_versioned_and_its_roles_and_checks_exist() -> None:
    assert CATALOGUE.version == "2026.1"
    assert len(CATALOGUE.entries) == 32
    for entry in CATALOGUE.entries:
        assert entry.role in ROLES
        assert (REPO / "playbooks" / "roles" / entry.role).is_dir(), entry.id
        assert (REPO / entry.check).is_file(), entry.check
    assert {e.role for e in CATALOGUE.entries} == {"base", "postgresql", "tomcat", "nginx", "app_deploy"}
    # Every database moves its data; nothing else does.
    assert all((e.data_move is not None) == (e.kind is ComponentKind.DB) for e in CATALOGUE.entries)


@pytest.mark.parametrize(("kind", "vendor", "product", "version", "entry", "target", "grade"), [
    ("db", "Oracle", "Oracle Database", "11g", "oracle-database", "PostgreSQL 15", "B"),
    ("db", "TmaxTibero", "Tibero", "6", "tibero", "PostgreSQL 15", "B"),
    ("was", "Oracle", "WebLogic Server", "12c", "weblogic", "Apache Tomcat 10.1", "B"),
    ("was", "BEA Systems", "WebLogic", "8.1", "weblogic-8-9", "Apache Tomcat 10.1", "C"),
    ("was", "TmaxSoft", "JEUS", "8", "jeus", "Apache Tomcat 10.1", "B"),
    ("was", "Tmax", "JEUS", "5", "jeus-4-5", "Apache Tomcat 10.1", "C"),
    ("web", "TmaxSoft", "WebtoB", "5", "webtob", "nginx 1.22", "A"),
    ("web", "Microsoft", "Internet Information Services", "10", "iis", "nginx 1.22", "B"),
    ("os", "HP", "HP-UX", "B.11.31", "hp-ux", "Debian 12", "B"),
    ("os", "IBM", "AIX", "7.3", "aix", "Debian 12", "B"),
    ("os", "Oracle", "Solaris", "11.4", "solaris", "Debian 12", "B"),
    ("os", "Sun Microsystems", "SunOS", "5.10", "solaris-sunos-5", "Debian 12", "B"),  # SunOS 5.10 is Solaris 10
    ("framework", "행정안전부", "전자정부 표준프레임워크", "3.8", "egovframe", "eGovFrame 4", "B"),
])
def test_the_catalogue_maps_proprietary_stacks_to_open_source_targets(
        kind: str, vendor: str, product: str, version: str, entry: str, target: str, grade: str) -> None:
    match = CATALOGUE.match(Component(ComponentKind(kind), vendor, product, version))
    assert match is not None
    assert (match.id, match.target.label, match.grade) == (entry, target, Grade(grade))


def test_a_broken_catalogue_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "catalogue.yaml"
    path.write_text("schema: 1\nversion: '1'\nentries: [{id: x, kind: db}]\n", encoding="utf-8")
    with pytest.raises(CatalogueError) as exc:
        files.load_catalogue(path)
    assert [f.field for f in exc.value.findings][:2] == ["entries[0].vendors", "entries[0].products"]
    path.write_text("entries: [", encoding="utf-8")
    with pytest.raises(CatalogueError, match=r"^file: catalogue\.yaml is not valid YAML"):
        files.load_catalogue(path)


# --------------------------------------------------------------------------- the sample inventory


def test_the_sample_inventory_loads_with_korean_and_english_names() -> None:
    assert len(SAMPLE) == 51
    assert Counter(s.agency for s in SAMPLE) == {"MOIS": 9, "MOEF": 7, "MSIT": 7, "MOHW": 7, "MOLIT": 7, "SEOUL": 7,
                                                 "BUSAN": 7}
    assert all(s.name_ko and s.name_en for s in SAMPLE)
    assert any("전자결재" in s.name_ko for s in SAMPLE) and any("민원" in s.name_ko for s in SAMPLE)
    assert [s.code for s in SAMPLE if s.status is SystemStatus.MIGRATED] == ["mois-addr"]
    assert sum(len(s.components) for s in SAMPLE) == 207
    edms = BY_CODE["mois-edms"]
    assert (str(edms.maintenance_window), edms.depends_on, edms.sizing.data_gb) == (
        "Sat 22:00-04:00", ("mois-sso", "mois-gpki"), 250)


def test_every_sample_component_is_matched_or_flagged() -> None:
    findings = matching.unknown_components(SAMPLE, CATALOGUE)
    assert [(f.system, f.field, f.code) for f in findings] == FLAGGED
    flagged = {(f.system, f.field) for f in findings}
    for system in SAMPLE:
        for match in matching.match_system(system, CATALOGUE):
            assert (match.entry is None) == ((system.code, f"components[{match.index}]") in flagged)
    assert "Oracle Database 8i (Oracle) is outside the versions the catalogue covers" in findings[2].message


def test_sample_waves_respect_dependencies() -> None:
    assignment = planning.plan_waves(SAMPLE, CATALOGUE)
    assert assignment.findings == ()
    assert planning.check_waves(assignment.waves, SAMPLE, CATALOGUE) == ()
    wave_of = {code: n for n, codes in enumerate(assignment.waves, start=1) for code in codes}
    assert len(assignment.waves) == 4 and len(wave_of) == 50  # every legacy system, once
    for code, wave in wave_of.items():
        position = assignment.waves[wave - 1].index(code)
        for dep in BY_CODE[code].depends_on:
            if BY_CODE[dep].status is SystemStatus.MIGRATED:
                assert dep not in wave_of
            elif wave_of[dep] == wave:  # allowed only for an open-source dependency, and it runs first
                assert matching.is_open_now(BY_CODE[dep], CATALOGUE)
                assert assignment.waves[wave - 1].index(dep) < position
            else:
                assert wave_of[dep] < wave
    assert [wave_of[c] for c in ("mois-gpki", "mois-sso", "mois-edms", "mois-minwon")] == [1, 2, 3, 4]
    assert assignment.waves[0] == ("busan-port", "mois-gpki", "molit-transport", "msit-spectrum", "msit-stat",
                                   "msit-portal", "seoul-stat")
    assert assignment.waves[3][-5:] == ("mois-stat", "mois-portal", "molit-edms", "msit-edms", "seoul-edms")


def test_sample_adoption_shares_before_and_after() -> None:
    rows = {r.agency: r for r in matching.adoption(SAMPLE, CATALOGUE)}
    assert {a: (r.components, r.open_now, r.open_after, r.unknown) for a, r in rows.items()} == {
        "BUSAN": (29, 6, 25, 1), "MOEF": (28, 8, 22, 2), "MOHW": (27, 5, 27, 0), "MOIS": (38, 14, 34, 1),
        "MOLIT": (29, 10, 29, 0), "MSIT": (28, 13, 23, 1), "SEOUL": (28, 9, 28, 0)}
    # SEOUL by hand: CentOS (seoul-sso), RHEL (seoul-minwon), RHEL, Tomcat, Apache (seoul-stat), 4 of
    # seoul-opendata = 9 of 28; every SEOUL component is known, so all 28 are open after.
    assert rows["SEOUL"].share_now == pytest.approx(9 / 28) and rows["SEOUL"].share_after == 1.0
    total = matching.total_adoption(rows.values())
    assert (total.components, total.open_now, total.open_after, total.unknown) == (207, 65, 188, 5)
    assert total.to_dict()["share_now"] == 0.314 and total.to_dict()["share_after"] == 0.9082


def test_the_sample_plan_on_the_dev_cloud() -> None:
    quotas = {agency: Quota(Resources(60, 200, 204800)) for agency in {s.agency for s in SAMPLE}}
    plan = planning.plan_migration(SAMPLE, CATALOGUE, DEVCLOUD_FLAVORS, quotas=quotas, cloud_free=UNLIMITED)
    # The five systems with an unknown component are refused; the 45 others are planned.
    assert sorted((f.system, f.field, f.code) for f in plan.findings) == sorted(FLAGGED)
    assert len(plan.systems) == 45 and not plan.ok
    # 42 three-tier systems (8 role runs each) and 3 Windows ones without an application server (db and web: 6).
    assert plan.summary() == "132 to create, 354 roles to apply, 45 data moves"
    gpki = next(s for s in plan.systems if s.system == "mois-gpki")
    assert [(s.name, s.flavor.name) for s in gpki.servers] == [
        ("mois-gpki-db-1", "large"), ("mois-gpki-app-1", "large"), ("mois-gpki-web-1", "large")]
    text = plan.render()
    assert ("    + server mois-gpki-app-1 (large: 4 vCPU, 4096 MB, 100 GB disk) image debian-12, "
            "network agency-mois-net") in text.splitlines()
    assert text.splitlines()[-1] == "Plan: 132 to create, 354 roles to apply, 45 data moves."
    assert json.loads(json.dumps(plan.to_dict()))["counts"]["servers"] == 132


def test_the_sample_plan_over_an_agency_quota_names_the_wave_and_system() -> None:
    quotas = {agency: Quota(Resources(60, 200, 204800)) for agency in {s.agency for s in SAMPLE}}
    quotas["MOIS"] = Quota(Resources(20, 24, 40960), in_use=Resources(3, 6, 6144))  # mois-addr runs already
    plan = planning.plan_migration(SAMPLE, CATALOGUE, DEVCLOUD_FLAVORS, quotas=quotas, cloud_free=UNLIMITED)
    over = [f for f in plan.findings if f.code == "over_quota"]
    # Planned for MOIS: wave 1 mois-gpki (3 large: 12 cores, 12288 MB), wave 2 mois-sso (3 medium: 6, 6144),
    # wave 3 mois-acct (6, 6144), mois-edms (12, 12288), mois-hr (6, 6144), wave 4 mois-stat (3 small), ...
    assert [(f.wave, f.system, f.field) for f in over] == [
        (3, "mois-acct", "quota.cores"), (3, "mois-edms", "quota.ram_mb"), (4, "mois-stat", "quota.instances")]
    assert [f.message for f in over] == [
        "wave 3: mois-acct takes MOIS over its quota of 24 cores: 6 in use + 24 planned = 30",
        "wave 3: mois-edms takes MOIS over its quota of 40960 MB of RAM: 6144 in use + 36864 planned = 43008",
        "wave 4: mois-stat takes MOIS over its quota of 20 instances: 3 in use + 18 planned = 21"]


# --------------------------------------------------------------------------- files in and out


def test_the_sample_inventory_round_trips_through_csv_and_yaml() -> None:
    csv_text = files.inventory_to_csv(SAMPLE)
    assert csv_text.splitlines()[0] == ",".join(inventory_domain.INVENTORY_FIELDS)
    assert files.read_inventory("systems.csv", csv_text.encode("utf-8")) == SAMPLE
    assert files.read_inventory("systems.yaml", files.inventory_to_yaml(SAMPLE)) == SAMPLE
    assert "전자결재" in files.inventory_to_yaml(SAMPLE)  # readable, not escaped


def test_a_csv_import_lists_every_bad_row_by_its_spreadsheet_number() -> None:
    good = files.inventory_to_csv([BY_CODE["mois-gpki"]]).splitlines()
    header, row = good[0], good[1]
    text = "\n".join([header, row, "", row.replace("mois-gpki", "mois-x").replace(",12,", ",twelve,", 1),
                      row.replace("critical", "urgent")]) + "\n"
    with pytest.raises(InventoryError) as exc:
        files.read_inventory("systems.csv", text.encode("utf-8"))
    assert [(f.row, f.field, f.code) for f in exc.value.findings] == [
        (4, "vcpus", "invalid"), (5, "code", "duplicate"), (5, "criticality", "invalid")]


@pytest.mark.parametrize(("filename", "content", "message"), [
    ("systems.csv", b"code,agency,critcality\n", "row 1 file: unknown columns: critcality"),
    ("systems.csv", b"", "file: the file is empty"),
    ("systems.csv", "code,agency\n".encode("utf-16"), "file: the file must be UTF-8"),
    ("systems.xlsx", b"", "file: the file must be .csv, .yaml or .yml"),
    ("systems.yaml", b"code: x\n", "file: a YAML inventory is a list of systems"),
    ("systems.yml", b"[", "file: not valid YAML"),
])
def test_bad_files_are_refused_with_a_file_finding(filename: str, content: bytes, message: str) -> None:
    with pytest.raises(InventoryError) as exc:
        files.read_inventory(filename, content)
    assert str(exc.value).startswith(message)
    assert exc.value.field == "file"


def test_csv_rows_with_more_cells_than_columns_are_refused() -> None:
    header = ",".join(inventory_domain.INVENTORY_FIELDS)
    text = header + "\n" + ",".join(["x"] * (len(inventory_domain.INVENTORY_FIELDS) + 2)) + "\n"
    with pytest.raises(InventoryError) as exc:
        files.read_inventory("systems.csv", text)
    assert (exc.value.row, exc.value.message) == (
        2, "row 2 file: has 16 values for 14 columns (quote values with commas)")
