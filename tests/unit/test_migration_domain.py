"""Pure rules of the migration engine (controlplane.inventory), on small hand-made data."""

from __future__ import annotations

import ast
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from controlplane.cloud.domain import OnboardingSpec, Quotas
from controlplane.inventory import domain as inventory_domain
from controlplane.inventory import ingress, matching, planning, windows
from controlplane.inventory.domain import (
    UNLIMITED,
    CatalogueError,
    Component,
    ComponentKind,
    Criticality,
    DependencyCycleError,
    Finding,
    Grade,
    InventoryError,
    PlanningError,
    Sizing,
    StepError,
    System,
    SystemStatus,
    Tier,
)
from controlplane.inventory.matching import Catalogue, VersionRange
from controlplane.inventory.planning import DEVCLOUD_FLAVORS, Flavor, Quota, Resources, Step, WavePlan

SMALL, MEDIUM, LARGE = DEVCLOUD_FLAVORS


def _entry(entry_id: str, kind: str, vendors: list[str], products: list[str], role: str, *, grade: str = "B",
           versions: dict[str, str] | None = None, open_source: bool = False,
           target: tuple[str, str, str] = ("Debian", "Debian", "12"), data_move: dict[str, str] | None = None,
           **extra: Any) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "id": entry_id, "kind": kind, "vendors": vendors, "products": products, "open_source": open_source,
        "target": dict(zip(("vendor", "product", "version"), target, strict=True)), "role": role,
        "check": f"playbooks/checks/test_{role}.py", "grade": grade, "notes": "",
    }
    if versions is not None:
        raw["versions"] = versions
    if data_move is not None:
        raw["data_move"] = data_move
    raw.update(extra)
    return raw


PG = ("PostgreSQL Global Development Group", "PostgreSQL", "15")
TOMCAT = ("Apache Software Foundation", "Apache Tomcat", "10.1")
NGINX = ("F5", "nginx", "1.22")
ENTRIES = [
    _entry("hp-ux", "os", ["HPE", "HP"], ["HP-UX"], "base", versions={"min": "10", "max": "11"}),
    _entry("centos", "os", ["CentOS Project"], ["CentOS"], "base", grade="A", open_source=True),
    _entry("oracle-database", "db", ["Oracle"], ["Oracle Database", "Oracle"], "postgresql", target=PG,
           versions={"min": "9", "max": "21"}, data_move={"format": "sql", "tool": "ora2pg"}),
    _entry("postgresql", "db", ["PostgreSQL Global Development Group"], ["PostgreSQL"], "postgresql", grade="A",
           target=PG, open_source=True, versions={"min": "9", "max": "15"},
           data_move={"format": "sql", "tool": "pg_dump"}),
    _entry("weblogic-8-9", "was", ["Oracle", "BEA"], ["WebLogic Server", "WebLogic"], "tomcat", grade="C",
           target=TOMCAT, versions={"min": "8", "max": "9"}),
    _entry("weblogic", "was", ["Oracle", "BEA"], ["WebLogic Server", "WebLogic"], "tomcat", target=TOMCAT,
           versions={"min": "10", "max": "14"}),
    _entry("tomcat", "was", ["Apache Software Foundation"], ["Apache Tomcat", "Tomcat"], "tomcat", grade="A",
           target=TOMCAT, open_source=True),
    _entry("webtob", "web", ["TmaxSoft"], ["WebtoB"], "nginx", grade="A", target=NGINX),
    _entry("nginx", "web", ["F5", "nginx"], ["nginx"], "nginx", grade="A", target=NGINX, open_source=True),
]
CATALOGUE = matching.catalogue_from_data({"schema": 1, "version": "test.1", "entries": ENTRIES})

HPUX = Component(ComponentKind.OS, "HPE", "HP-UX", "11i v3")
CENTOS = Component(ComponentKind.OS, "CentOS Project", "CentOS", "7.9")
ORACLE = Component(ComponentKind.DB, "Oracle", "Oracle Database", "11g")
POSTGRES = Component(ComponentKind.DB, "PostgreSQL Global Development Group", "PostgreSQL", "11")
WEBLOGIC = Component(ComponentKind.WAS, "Oracle", "WebLogic Server", "12c")
TOMCAT9 = Component(ComponentKind.WAS, "Apache Software Foundation", "Apache Tomcat", "9.0")
WEBTOB = Component(ComponentKind.WEB, "TmaxSoft", "WebtoB", "5")
NGINX1 = Component(ComponentKind.WEB, "nginx", "nginx", "1.20")
TMAX = Component(ComponentKind.MIDDLEWARE, "TmaxSoft", "Tmax", "5")
LEGACY_STACK = (HPUX, ORACLE, WEBLOGIC, WEBTOB)
OPEN_STACK = (CENTOS, POSTGRES, TOMCAT9, NGINX1)


def _system(code: str, *deps: str, agency: str = "MOIS", components: tuple[Component, ...] = LEGACY_STACK,
            vcpus: int = 6, ram_mb: int = 6144, disk_gb: int = 90, data_gb: int = 30,
            status: SystemStatus = SystemStatus.LEGACY) -> System:
    return System(code=code, agency=agency, name_ko=f"{code} 시스템", name_en=f"{code} system",
                  criticality=Criticality.MEDIUM, sizing=Sizing(vcpus, ram_mb, disk_gb, data_gb),
                  components=components, depends_on=deps, status=status)


def _row(code: str, **fields: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "code": code, "agency": "MOIS", "name_ko": "전자결재", "name_en": "Electronic approval",
        "criticality": "high", "maintenance_window": "Sun 02:00-06:00", "vcpus": 6, "ram_mb": 6144, "disk_gb": 200,
        "data_gb": 50,
        "components": [{"kind": "os", "vendor": "HPE", "product": "HP-UX", "version": "11i v3"},
                       {"kind": "db", "vendor": "Oracle", "product": "Oracle Database", "version": "11g"}],
        "depends_on": [],
    }
    row.update(fields)
    return row


def _errors(exc: pytest.ExceptionInfo[InventoryError]) -> list[tuple[int | None, str, str]]:
    return [(f.row, f.field, f.code) for f in exc.value.findings]


# --------------------------------------------------------------------------- purity


PURE_RULES = ("domain", "matching", "windows", "planning", "ingress")


@pytest.mark.parametrize("module", PURE_RULES)
def test_the_pure_rules_import_only_the_standard_library_and_pure_rules(module: str) -> None:
    source = Path(inventory_domain.__file__).with_name(f"{module}.py")
    tree = ast.parse(source.read_text(encoding="utf-8"))
    modules = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    modules |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    ours = {f"controlplane.inventory.{name}" for name in PURE_RULES} | {"controlplane.cloud.domain"}
    assert {m for m in modules - ours if m.split(".")[0] not in sys.stdlib_module_names} <= {"__future__"}, modules


def test_agency_network_is_the_name_onboarding_gives() -> None:
    spec = OnboardingSpec("MOIS", Quotas(1, 1, 1, 0), "10.81.3.0/24", (), None)
    assert inventory_domain.agency_network("MOIS") == spec.network_name == "agency-mois-net"


# --------------------------------------------------------------------------- versions


@pytest.mark.parametrize(("version", "key"), [
    ("11gR2", (11,)), ("B.11.31", (11, 31)), ("11i v3", (11,)), ("2008 R2", (2008,)), ("8i", (8,)),
    ("10.3.6", (10, 3, 6)), ("5 SP1", (5,)), ("latest", None),
])
def test_version_key_takes_the_first_dotted_number(version: str, key: tuple[int, ...] | None) -> None:
    assert matching.version_key(version) == key


def test_version_range_bounds_compare_on_the_bounds_own_precision() -> None:
    oracle = VersionRange("9", "21")
    assert [oracle.contains(v) for v in ("8i", "9i", "11g", "19c", "21c", "23ai")] == [
        False, True, True, True, True, False]
    assert VersionRange(None, "11").contains("B.11.31") and not VersionRange(None, "11").contains("12")
    assert not VersionRange("9.2").contains("9.0") and VersionRange("9.2").contains("9.2.0.8")
    assert VersionRange("9.2").contains("10")
    assert not oracle.contains("latest") and VersionRange().contains("latest")
    assert (str(oracle), str(VersionRange("9.2")), str(VersionRange(None, "11")), str(VersionRange())) == (
        "9 to 21", "9.2 or later", "up to 11", "any version")


def test_version_ranges_overlap_when_a_version_is_in_both() -> None:
    assert not VersionRange("8", "9").overlaps(VersionRange("10", "14"))
    assert VersionRange("9", "11").overlaps(VersionRange("11.2", None))
    assert not VersionRange("1", "1").overlaps(VersionRange("2"))
    assert VersionRange().overlaps(VersionRange("5", "6"))


# --------------------------------------------------------------------------- catalogue


def test_catalogue_matches_by_kind_names_and_version_range() -> None:
    assert CATALOGUE.version == "test.1"
    assert CATALOGUE.match(HPUX).id == "hp-ux"  # type: ignore[union-attr]
    # Names compare without case, spaces and punctuation; aliases count.
    assert CATALOGUE.match(Component(ComponentKind.OS, "hp", "hp ux", "11.31")).id == "hp-ux"  # type: ignore[union-attr]
    assert CATALOGUE.match(Component(ComponentKind.DB, "ORACLE", "oracle", "19c")).id == "oracle-database"  # type: ignore[union-attr]
    # The version picks between the two WebLogic lines, with different grades.
    old = CATALOGUE.match(Component(ComponentKind.WAS, "BEA", "WebLogic", "9.2"))
    new = CATALOGUE.match(Component(ComponentKind.WAS, "Oracle", "WebLogic Server", "11g"))
    assert (old.id, old.grade, new.id, new.grade) == ("weblogic-8-9", Grade.C, "weblogic", Grade.B)  # type: ignore[union-attr]
    # Wrong kind, unknown product, version outside every range: no match, never a guess.
    assert CATALOGUE.match(Component(ComponentKind.WEB, "HPE", "HP-UX", "11")) is None
    assert CATALOGUE.match(TMAX) is None
    assert CATALOGUE.match(Component(ComponentKind.DB, "Oracle", "Oracle Database", "8i")) is None


def test_catalogue_reports_every_bad_entry_by_field() -> None:
    bad = [
        _entry("ok", "os", ["HPE"], ["HP-UX"], "base"),
        _entry("Bad Id", "bogus", [], ["X"], "ansible", grade="D", open_source="yes"),  # type: ignore[arg-type]
        _entry("wrong-check", "web", ["X"], ["Y"], "nginx", check="playbooks/checks/test_base.py",
               data_moves={"format": "sql"}),
        _entry("move-on-tomcat", "was", ["X"], ["Z"], "tomcat", data_move={"format": "sql", "tool": "x"}),
        _entry("bad-range", "db", ["X"], ["W"], "postgresql", versions={"min": "12", "max": "9"}),
        _entry("float-version", "db", ["X"], ["V"], "postgresql", versions={"min": 9.6}),  # type: ignore[dict-item]
        _entry("ok", "os", ["HPE"], ["HPUX"], "base"),
    ]
    with pytest.raises(CatalogueError) as exc:
        matching.catalogue_from_data({"schema": 2, "version": "", "entries": bad})
    fields = [f.field for f in exc.value.findings]
    assert fields == [
        "schema", "version", "entries[1].id", "entries[1].kind", "entries[1].vendors", "entries[1].open_source",
        "entries[1].role", "entries[1].grade",
        "entries[2].data_moves",  # a typo of data_move, refused rather than ignored
        "entries[2].check", "entries[3].data_move", "entries[4].versions", "entries[5].versions.min",
        # the last entry repeats the first one's id, and matches the same components (HPUX = HP-UX)
        "entries[6].id", "entries[6]",
    ]
    assert exc.value.findings[-2].message == "ok is already the id of entries[0]"
    assert (exc.value.findings[-1].code, exc.value.findings[-1].message) == (
        "overlap", "ok (any version) matches components that entries[0] ok (any version) matches too")
    assert exc.value.findings[9].message == "must be playbooks/checks/test_nginx.py, the checks of role nginx"
    assert exc.value.findings[11].message == "min 12 is above max 9"
    assert str(exc.value) == "schema: must be 1 (got 2) (and 14 more)"


def test_overlapping_entries_are_refused_so_matching_never_depends_on_order() -> None:
    entries = [_entry("a", "db", ["Oracle"], ["Oracle"], "postgresql", versions={"min": "9", "max": "12"}),
               _entry("b", "db", ["oracle"], ["ORACLE", "Oracle DB"], "postgresql", versions={"min": "12.2"})]
    with pytest.raises(CatalogueError) as exc:
        matching.catalogue_from_data({"schema": 1, "version": "1", "entries": entries})
    assert exc.value.findings[0].message == ("b (12.2 or later) matches components that entries[0] a (9 to 12) "
                                             "matches too")
    entries[1]["versions"] = {"min": "13"}
    assert len(matching.catalogue_from_data({"schema": 1, "version": "1", "entries": entries}).entries) == 2


def test_unknown_components_are_flagged_with_system_and_field() -> None:
    systems = [_system("a", components=(HPUX, TMAX)),
               _system("b", components=(Component(ComponentKind.DB, "Oracle", "Oracle", "8i"),))]
    findings = matching.unknown_components(systems, CATALOGUE)
    assert [(f.code, f.system, f.field) for f in findings] == [
        ("unknown_component", "a", "components[1]"), ("unknown_version", "b", "components[0]")]
    assert findings[0].message == ("no catalogue entry for middleware TmaxSoft Tmax 5; add one before the system "
                                   "can be planned")
    assert "outside the versions the catalogue covers for it (oracle-database: 9 to 21)" in findings[1].message


# --------------------------------------------------------------------------- maintenance windows


def test_maintenance_windows_parse_print_and_contain() -> None:
    window = windows.parse_window("sat 22:00-02:00")
    assert (window.days, str(window), window.minutes) == ((5,), "Sat 22:00-02:00", 240)
    assert window.contains(datetime(2026, 12, 5, 22, 0))  # Saturday
    assert window.contains(datetime(2026, 12, 6, 1, 59))  # Sunday morning: still Saturday's window
    assert not window.contains(datetime(2026, 12, 6, 2, 0))
    assert not window.contains(datetime(2026, 12, 5, 21, 59))
    assert not window.contains(datetime(2026, 12, 6, 22, 30))  # Sunday evening
    assert str(windows.parse_window("Mon-Fri 23:00-05:00")) == "Mon,Tue,Wed,Thu,Fri 23:00-05:00"
    assert str(windows.parse_window("Fri-Mon 1:00-4:00")) == "Mon,Fri,Sat,Sun 01:00-04:00"
    assert str(windows.parse_window("daily 01:00-04:00")) == "daily 01:00-04:00"
    for text in ("Sunday 02:00-06:00", "Sun 02:00", "Sun 25:00-06:00", "Sun 02:00-02:00"):
        with pytest.raises(ValueError, match=repr(text) if text != "Sunday 02:00-06:00" else "'sunday'"):
            windows.parse_window(text)


# --------------------------------------------------------------------------- inventory


def test_parse_inventory_reads_nested_and_flat_rows() -> None:
    flat = _row("mois-sso", components="os:IBM:AIX:7.1; db : TmaxData : Tibero : 6", depends_on="mois-edms, x",
                criticality="HIGH", status="", data_gb="")
    systems = inventory_domain.parse_inventory([_row("mois-edms"), _row("x", agency="seoul"), flat])
    edms, x, sso = systems
    assert edms.components == (HPUX, ORACLE)
    assert edms.sizing == Sizing(6, 6144, 200, 50) and str(edms.maintenance_window) == "Sun 02:00-06:00"
    assert edms.name == "전자결재 / Electronic approval" and x.agency == "seoul"
    assert sso.components[1] == Component(ComponentKind.DB, "TmaxData", "Tibero", "6")
    assert (sso.depends_on, sso.criticality, sso.status, sso.sizing.data_gb) == (
        ("mois-edms", "x"), Criticality.HIGH, SystemStatus.LEGACY, 0)


def test_parse_inventory_reports_every_bad_row_with_number_and_field() -> None:
    rows = [
        _row("ok-1"),
        {},  # a blank line: skipped, still counted
        _row("Bad_Code", vcpus=0, ram_mb="lots", criticality="urgent"),
        _row("ok-1"),
        _row("no-window", criticality="critical", maintenance_window=""),
        _row("versions", components=[{"kind": "db", "vendor": "Oracle", "product": "Oracle", "version": 12.1},
                                     {"kind": "queue", "vendor": "X", "product": "Y", "version": "1"},
                                     "os:HPE:HP-UX"], typo_field=1),
        _row("deps", depends_on=["deps", "nowhere", "bad-row"]),
        _row("bad-row", data_gb=500, maintenance_window="Sunday 2am"),
        _row("spaces", agency="Seoul City", name_ko="", name_en=" ", components=[]),
    ]
    with pytest.raises(InventoryError) as exc:
        inventory_domain.parse_inventory(rows, first_row=2)
    assert _errors(exc) == [
        (4, "code", "invalid"), (4, "criticality", "invalid"), (4, "vcpus", "invalid"), (4, "ram_mb", "invalid"),
        (5, "code", "duplicate"),
        (6, "maintenance_window", "required"),
        (7, "typo_field", "unknown_field"), (7, "components[0].version", "invalid"),
        (7, "components[1].kind", "invalid"), (7, "components[2]", "invalid"),
        # dependencies are checked on valid rows only; bad-row (row 9) is known even though it is invalid
        (8, "depends_on", "self_dependency"), (8, "depends_on", "unknown_dependency"),
        (9, "data_gb", "invalid"), (9, "maintenance_window", "invalid"),
        (10, "agency", "invalid"), (10, "name_ko", "required"), (10, "components", "required"),
    ]
    messages = {(f.row, f.field): f.message for f in exc.value.findings}
    assert messages[(5, "code")] == "code ok-1 is already on row 2"
    assert messages[(7, "components[0].version")] == "12.1 must be quoted text (YAML reads 12.10 as 12.1)"
    assert messages[(8, "depends_on")] == "depends on nowhere, which is not in the inventory"  # bad-row is known
    assert messages[(9, "data_gb")] == "500 GB of data do not fit on 200 GB of disk"
    assert messages[(4, "vcpus")] == "0 must be a whole number from 1 to 2147483647"
    assert exc.value.row == 4 and exc.value.field == "code" and exc.value.system == "Bad_Code"
    assert str(exc.value).endswith("(and 16 more)")


def test_parse_inventory_names_each_dependency_cycle() -> None:
    rows = [_row("c", depends_on=["a"]), _row("a", depends_on=["b"]), _row("b", depends_on=["c"]),
            _row("d", depends_on=["e", "a"]), _row("e", depends_on=["d"]), _row("f", depends_on=["a"])]
    with pytest.raises(InventoryError) as exc:
        inventory_domain.parse_inventory(rows)
    assert [(f.row, f.system, f.message) for f in exc.value.findings] == [
        (2, "a", "dependency cycle: a -> b -> c -> a"), (4, "d", "dependency cycle: d -> e -> d")]


def test_find_cycles_ignores_what_only_leads_into_a_cycle() -> None:
    systems = [_system("x", "y"), _system("y", "x"), _system("z", "x"), _system("w", "w")]
    assert inventory_domain.find_cycles(systems) == (("w", "w"), ("x", "y", "x"))
    assert inventory_domain.find_cycles([_system("a", "b"), _system("b")]) == ()


def test_inventory_rows_read_back_to_the_same_systems() -> None:
    systems = inventory_domain.parse_inventory([_row("a", status="migrated", notes="pilot"), _row("b", depends_on=["a"],
                                                                                      maintenance_window=None)])
    for flat in (False, True):
        rows = inventory_domain.inventory_rows(systems, flat=flat)
        assert inventory_domain.parse_inventory(rows) == systems
    flat_row = inventory_domain.inventory_rows(systems, flat=True)[1]
    assert flat_row["components"] == "os:HPE:HP-UX:11i v3; db:Oracle:Oracle Database:11g"
    assert (flat_row["depends_on"], flat_row["maintenance_window"]) == ("a", "")


# --------------------------------------------------------------------------- waves


def test_waves_put_each_system_after_what_it_depends_on() -> None:
    systems = [_system("portal", "sso", "edms"), _system("edms", "sso"), _system("sso"), _system("stat")]
    assignment = planning.plan_waves(systems, CATALOGUE)
    assert assignment.waves == (("sso", "stat"), ("edms",), ("portal",))
    assert assignment.findings == ()
    assert planning.check_waves(assignment.waves, systems, CATALOGUE) == ()


def test_an_open_source_dependency_may_share_the_wave_and_runs_first() -> None:
    systems = [_system("app", "lib"), _system("lib", components=OPEN_STACK), _system("zzz", "app")]
    assert matching.is_open_now(systems[1], CATALOGUE) and not matching.is_open_now(systems[0], CATALOGUE)
    assert planning.plan_waves(systems, CATALOGUE).waves == (("lib", "app"), ("zzz",))
    assert planning.check_waves([["app", "lib"], ["zzz"]], systems, CATALOGUE) == ()


def test_a_migrated_dependency_constrains_nothing_and_an_unplanned_one_is_a_finding() -> None:
    systems = [_system("app", "done", "later"), _system("done", status=SystemStatus.MIGRATED), _system("later")]
    assignment = planning.plan_waves(systems, CATALOGUE, planned=["app", "done", "ghost"])
    assert assignment.waves == (("app",),)
    assert [(f.code, f.system, f.field) for f in assignment.findings] == [
        ("system_migrated", "done", "status"), ("unknown_system", "ghost", "wave"),
        ("dependency_not_planned", "app", "depends_on")]
    assert assignment.findings[2].message == "depends on later, which is neither migrated nor in the plan"


def test_waves_respect_a_size_limit() -> None:
    systems = [_system(c) for c in "abcde"] + [_system("f", "a")]
    assignment = planning.plan_waves(systems, CATALOGUE, max_per_wave=2)
    assert assignment.waves == (("a", "b"), ("c", "d"), ("e", "f"))
    with pytest.raises(inventory_domain.MigrationError, match="max_per_wave must be 1 or more"):
        planning.plan_waves(systems, CATALOGUE, max_per_wave=0)


def test_a_dependency_cycle_is_an_error_that_names_it() -> None:
    systems = [_system("a", "b"), _system("b", "c"), _system("c", "a"), _system("d")]
    with pytest.raises(DependencyCycleError) as exc:
        planning.plan_waves(systems, CATALOGUE)
    assert str(exc.value) == "dependency cycle: a -> b -> c -> a"
    assert (exc.value.cycle, exc.value.system, exc.value.field) == (("a", "b", "c", "a"), "a", "depends_on")
    # Leaving one member out of the plan breaks the cycle (and reports the missing dependency instead).
    assert planning.plan_waves(systems, CATALOGUE, planned=["a", "b"]).waves == (("b",), ("a",))


def test_check_waves_reports_every_broken_rule() -> None:
    systems = [_system("app", "db"), _system("db"), _system("web", "app"), _system("old", status=SystemStatus.MIGRATED)]
    findings = planning.check_waves([["app", "db", "web"], ["db", "old", "nope"]], systems, CATALOGUE)
    assert [(f.code, f.system, f.wave) for f in findings] == [
        ("duplicate", "db", 2), ("system_migrated", "old", 2), ("unknown_system", "nope", 2),
        ("dependency_order", "app", 1), ("dependency_order", "web", 1)]
    findings = planning.check_waves([["web"], ["app"], ["db"]], systems, CATALOGUE)
    assert [f.message for f in findings] == [
        "in wave 1, it depends on app in wave 2: it must migrate in a later wave than app",
        "in wave 2, it depends on db in wave 3: it must migrate in a later wave than db"]
    same = planning.check_waves([["db", "app"], ["web"]], systems, CATALOGUE)
    assert [f.message for f in same] == ["in wave 1, it depends on db in wave 1: it must migrate in a later wave "
                                         "than db (the same wave only when db is open source already)"]


# --------------------------------------------------------------------------- flavors, servers, plans


def test_the_smallest_flavor_that_fits_is_chosen() -> None:
    assert planning.choose_flavor(1, 512, DEVCLOUD_FLAVORS) == SMALL
    assert planning.choose_flavor(2, 1025, DEVCLOUD_FLAVORS) == MEDIUM
    assert planning.choose_flavor(3, 1024, DEVCLOUD_FLAVORS) == LARGE
    assert planning.choose_flavor(5, 1024, DEVCLOUD_FLAVORS) is None
    sized = [Flavor("d-small", 2, 2048, 20), Flavor("d-big", 2, 2048, 100)]
    assert planning.choose_flavor(1, 1024, sized, disk_gb=50) == sized[1]
    assert planning.choose_flavor(1, 1024, DEVCLOUD_FLAVORS, disk_gb=5000) == SMALL  # disk 0: no limit


def test_a_three_tier_system_gets_db_app_and_web_servers_with_its_roles_in_order() -> None:
    plan = planning.plan_system(_system("moisweb"), CATALOGUE, DEVCLOUD_FLAVORS, wave=2)
    assert [(s.name, s.tier, s.flavor.name, s.disk_gb, s.roles) for s in plan.servers] == [
        ("moisweb-db-1", Tier.DB, "medium", 30, ("base", "postgresql", "data_migration")),
        ("moisweb-app-1", Tier.APP, "medium", 30, ("base", "tomcat", "app_deploy")),
        ("moisweb-web-1", Tier.WEB, "medium", 30, ("base", "nginx")),
    ]
    assert all(s.network == "agency-mois-net" and s.image == "debian-12" for s in plan.servers)
    assert [(r.role, r.servers, r.check) for r in plan.roles] == [
        ("base", ("moisweb-db-1", "moisweb-app-1", "moisweb-web-1"), "playbooks/checks/test_base.py"),
        ("postgresql", ("moisweb-db-1",), "playbooks/checks/test_postgresql.py"),
        ("data_migration", ("moisweb-db-1",), "playbooks/checks/test_data_migration.py"),
        ("tomcat", ("moisweb-app-1",), "playbooks/checks/test_tomcat.py"),
        ("nginx", ("moisweb-web-1",), "playbooks/checks/test_nginx.py"),
        ("app_deploy", ("moisweb-app-1",), "playbooks/checks/test_app_deploy.py"),
    ]
    assert [(m.source, m.entry, m.database, m.server, m.format, m.tool) for m in plan.data_moves] == [
        (ORACLE, "oracle-database", "moisweb", "moisweb-db-1", "sql", "ora2pg")]
    assert [(r.entry, r.target.label, r.grade) for r in plan.replacements] == [
        ("hp-ux", "Debian 12", Grade.B), ("oracle-database", "PostgreSQL 15", Grade.B),
        ("weblogic", "Apache Tomcat 10.1", Grade.B), ("webtob", "nginx 1.22", Grade.A)]
    assert (plan.grade, plan.wave, plan.resources, plan.role_applications) == (
        Grade.B, 2, Resources(3, 6, 6144), 8)
    assert plan.steps == planning.STEPS


def test_stateless_tiers_scale_out_but_a_database_is_never_split() -> None:
    plan = planning.plan_system(_system("big", components=(HPUX, WEBLOGIC, WEBTOB), vcpus=20, ram_mb=12000),
                              CATALOGUE, DEVCLOUD_FLAVORS)
    # 10 vCPU and 6000 MB per tier: three large servers each (4 vCPU, 4096 MB).
    assert [(s.name, s.flavor.name) for s in plan.servers] == [
        ("big-app-1", "large"), ("big-app-2", "large"), ("big-app-3", "large"),
        ("big-web-1", "large"), ("big-web-2", "large"), ("big-web-3", "large")]
    assert plan.data_moves == () and Step.MOVE_DATA not in plan.steps
    with pytest.raises(PlanningError) as exc:
        planning.plan_system(_system("bigdb", vcpus=18, ram_mb=6000), CATALOGUE, DEVCLOUD_FLAVORS)
    finding = exc.value.findings[0]
    assert (finding.code, finding.system, finding.field) == ("no_flavor", "bigdb", "vcpus")
    assert finding.message == ("the db tier needs 6 vCPU, 2000 MB and 30 GB (1/3 of the system's size) and no flavor "
                               "fits: the largest flavor is large (4 vCPU, 4096 MB); a database is not split across "
                               "servers")


def test_systems_without_an_app_server_deploy_behind_nginx_or_get_a_bare_host() -> None:
    static = planning.plan_system(_system("site", components=(CENTOS, POSTGRES, NGINX1), vcpus=2, ram_mb=2048),
                                CATALOGUE, DEVCLOUD_FLAVORS)
    assert [(s.name, s.flavor.name, s.roles) for s in static.servers] == [
        ("site-db-1", "small", ("base", "postgresql", "data_migration")),
        ("site-web-1", "small", ("base", "nginx", "app_deploy"))]
    bare = planning.plan_system(_system("batch", components=(HPUX,), vcpus=1, ram_mb=512), CATALOGUE,
                              DEVCLOUD_FLAVORS)
    assert [(s.name, s.roles) for s in bare.servers] == [("batch-app-1", ("base",))]


def test_a_system_with_an_unknown_component_cannot_be_planned() -> None:
    with pytest.raises(PlanningError) as exc:
        planning.plan_system(_system("odd", components=(HPUX, TMAX, ORACLE, TMAX)), CATALOGUE, DEVCLOUD_FLAVORS)
    assert [(f.code, f.system, f.field) for f in exc.value.findings] == [
        ("unknown_component", "odd", "components[1]"), ("unknown_component", "odd", "components[3]")]
    assert (exc.value.system, exc.value.field) == ("odd", "components[1]")


def _wave(number: int, *systems: System) -> WavePlan:
    return WavePlan(number, tuple(planning.plan_system(s, CATALOGUE, DEVCLOUD_FLAVORS, wave=number) for s in systems))


def test_capacity_is_checked_cumulatively_wave_after_wave() -> None:
    # Each system: 3 medium servers = 3 instances, 6 cores, 6144 MB.
    waves = [_wave(1, _system("a1"), _system("b1", agency="BUSAN")), _wave(2, _system("a2"), _system("a3"))]
    quotas = {"MOIS": Quota(Resources(20, 15, inventory_domain.UNLIMITED), in_use=Resources(2, 4, 4096)),
              "BUSAN": Quota(Resources(UNLIMITED, UNLIMITED, UNLIMITED))}
    findings = planning.check_capacity(waves, quotas, Resources(inventory_domain.UNLIMITED, 100, 20000))
    assert [(f.code, f.field, f.system, f.agency, f.wave) for f in findings] == [
        ("over_quota", "quota.cores", "a2", "MOIS", 2),
        ("over_cloud_capacity", "cloud.ram_mb", "a3", "MOIS", 2)]
    assert findings[0].message == "wave 2: a2 takes MOIS over its quota of 15 cores: 4 in use + 12 planned = 16"
    assert findings[1].message == "wave 2: a3 takes the plan over the cloud's free MB of RAM: 24576 planned, 20000 free"
    missing = planning.check_capacity(waves[:1], {}, Resources(-1, -1, -1))
    assert [(f.code, f.agency) for f in missing] == [("no_quota", "MOIS"), ("no_quota", "BUSAN")]


def test_the_plan_renders_like_terraform_and_serialises_to_json() -> None:
    systems = [_system("moisweb", "moisdb"), _system("moisdb", vcpus=3, ram_mb=1500, disk_gb=30, data_gb=10),
               _system("odd", components=(CENTOS, TMAX))]
    plan = planning.plan_migration(systems, CATALOGUE, DEVCLOUD_FLAVORS,
                                 quotas={"MOIS": Quota(Resources(10, 20, 20480))}, cloud_free=Resources(-1, -1, -1))
    assert [[s.system for s in w.systems] for w in plan.waves] == [["moisdb"], ["moisweb"]]
    assert [(f.code, f.system, f.wave) for f in plan.findings] == [("unknown_component", "odd", 1)]
    assert not plan.ok
    assert plan.summary() == "6 to create, 16 roles to apply, 2 data moves"
    text = plan.render()
    assert text.splitlines()[0] == "Migration plan (catalogue test.1): 2 systems in 2 waves"
    assert "    + server moisweb-app-1 (medium: 2 vCPU, 2048 MB, 30 GB disk) image debian-12, network agency-mois-net" \
        in text.splitlines()
    assert "    + server moisdb-db-1 (small: 1 vCPU, 1024 MB, 10 GB disk) image debian-12, network agency-mois-net" \
        in text.splitlines()
    for line in ("Wave 2 (1 system)", "    ~ db Oracle Database 11g -> PostgreSQL 15 (grade B, oracle-database)",
                 "    * role postgresql on moisweb-db-1",
                 "    > data Oracle Database 11g -> database moisweb on moisweb-db-1 (sql via ora2pg, 30 GB)",
                 "    ? check playbooks/checks/test_data_migration.py on moisweb-db-1",
                 "    steps: precheck -> provision -> configure -> move_data -> verify -> cutover (approval) -> retire",
                 "  ! odd components[1]: no catalogue entry for middleware TmaxSoft Tmax 5; add one before the system "
                 "can be planned"):
        assert line in text.splitlines()
    assert text.splitlines()[-1] == "Plan: 6 to create, 16 roles to apply, 2 data moves."
    data = json.loads(json.dumps(plan.to_dict()))
    assert (data["ok"], data["summary"], data["counts"]["servers"]) == (False, plan.summary(), 6)
    server = data["waves"][1]["systems"][0]["servers"][1]
    assert (server["name"], server["flavor"]["name"], server["roles"]) == (
        "moisweb-app-1", "medium", ["base", "tomcat", "app_deploy"])
    assert data["findings"][0]["field"] == "components[1]"


def test_the_plan_uses_given_waves_and_reports_their_order_and_capacity() -> None:
    systems = [_system("web", "db"), _system("db")]
    plan = planning.plan_migration(systems, CATALOGUE, DEVCLOUD_FLAVORS, waves=[["web", "db"]],
                                 quotas={"MOIS": Quota(Resources(4, 100, 100000))}, cloud_free=Resources(-1, -1, -1))
    # Inside a wave the plan runs dependencies first, whatever order the operator wrote.
    assert [s.system for s in plan.waves[0].systems] == ["db", "web"]
    assert [(f.code, f.field) for f in plan.findings] == [
        ("dependency_order", "wave"), ("over_quota", "quota.instances")]
    ok = planning.plan_migration(systems, CATALOGUE, DEVCLOUD_FLAVORS, waves=[["db"], ["web"]],
                               quotas={"MOIS": Quota(Resources(6, 12, 12288))}, cloud_free=Resources(-1, -1, -1))
    assert ok.ok and ok.render().endswith("Plan: 6 to create, 16 roles to apply, 2 data moves.")


# --------------------------------------------------------------------------- steps


def test_next_step_follows_the_sequence_and_the_cutover_needs_approval() -> None:
    assert planning.next_step([]) is Step.PRECHECK
    assert planning.next_step(["precheck", "provision", "configure", "move_data", "verify"]) is Step.CUTOVER
    assert Step.CUTOVER.needs_approval and not Step.VERIFY.needs_approval
    assert planning.next_step(planning.STEPS) is None
    without_data = tuple(s for s in planning.STEPS if s is not Step.MOVE_DATA)
    assert planning.next_step([Step.PRECHECK, Step.PROVISION, Step.CONFIGURE], steps=without_data) is Step.VERIFY


def test_steps_done_out_of_order_are_refused() -> None:
    with pytest.raises(StepError, match=r"^move_data is done but provision is not: steps run in order"):
        planning.next_step(["precheck", "move_data"])
    with pytest.raises(StepError, match="'bake' is not a valid Step"):
        planning.next_step(["bake"])
    with pytest.raises(StepError, match="move_data is not a step of this migration"):
        planning.next_step(["precheck", "move_data"], steps=(Step.PRECHECK, Step.PROVISION))


def test_rollback_undoes_what_was_done_last_first() -> None:
    assert planning.rollback_steps([]) == ()
    assert planning.rollback_steps(["precheck"]) == ()
    assert planning.rollback_steps(["precheck"], failed="provision") == (Step.PROVISION,)
    done = ["precheck", "provision", "configure", "move_data", "verify", "cutover"]
    assert planning.rollback_steps(done) == (Step.CUTOVER, Step.MOVE_DATA, Step.PROVISION)
    assert planning.rollback_steps(done[:3], failed=Step.MOVE_DATA) == (Step.MOVE_DATA, Step.PROVISION)
    assert Step.CUTOVER.undo is not None and "legacy backends" in Step.CUTOVER.undo
    assert Step.VERIFY.undo is None
    with pytest.raises(StepError, match="retire has started"):
        planning.rollback_steps(done, failed="retire")
    with pytest.raises(StepError, match="retire has started"):
        planning.rollback_steps(planning.STEPS)
    with pytest.raises(StepError, match=r"^verify cannot have failed: the next step is configure$"):
        planning.rollback_steps(["precheck", "provision"], failed="verify")


# --------------------------------------------------------------------------- adoption


def test_adoption_counts_open_source_components_now_and_after_the_plan() -> None:
    systems = [
        _system("a1"),  # 4 proprietary
        _system("a2", components=OPEN_STACK),  # 4 open
        _system("a3", components=(CENTOS, TMAX)),  # 1 open, 1 unknown: cannot migrate, stays as it is
        _system("b1", agency="BUSAN", components=(HPUX, POSTGRES)),
    ]
    rows = matching.adoption(systems, CATALOGUE)
    assert [(r.agency, r.components, r.open_now, r.open_after, r.unknown) for r in rows] == [
        ("BUSAN", 2, 1, 2, 0), ("MOIS", 10, 5, 9, 1)]
    assert (rows[1].share_now, rows[1].share_after) == (0.5, 0.9)
    assert rows[1].to_dict() == {"agency": "MOIS", "components": 10, "open_now": 5, "open_after": 9, "unknown": 1,
                                 "share_now": 0.5, "share_after": 0.9}
    only_b = matching.adoption(systems, CATALOGUE, planned=["b1"])
    assert [(r.agency, r.open_after) for r in only_b] == [("BUSAN", 2), ("MOIS", 5)]
    total = matching.total_adoption(rows)
    assert (total.agency, total.components, total.open_now, total.open_after) == ("ALL", 12, 6, 11)


def test_findings_describe_where_they_are() -> None:
    assert Finding("invalid", "bad", "vcpus", "a", 3).describe() == "row 3 a vcpus: bad"
    assert Finding("no_quota", "none", "agency").describe() == "agency: none"
    assert Finding("x", "plain").describe() == "plain"


def test_catalogue_entry_lookup() -> None:
    assert CATALOGUE.entry("webtob").target.label == "nginx 1.22"
    with pytest.raises(KeyError):
        CATALOGUE.entry("nope")
    assert isinstance(CATALOGUE, Catalogue)


# --------------------------------------------------------------------------- traffic the declared ingress drops


def _opening(port_min: int | None, port_max: int | None = None, remote: str = "0.0.0.0/0",
             protocol: str = "tcp") -> ingress.Opening:
    return ingress.Opening(protocol, port_min, port_max if port_max is not None else port_min, remote)


def _minwon_plan(networks: dict[str, ingress.AgencyNetwork]) -> planning.MigrationPlan:
    plan = planning.plan_migration([_system("minwon")], CATALOGUE, DEVCLOUD_FLAVORS, quotas={},
                                 cloud_free=Resources(-1, -1, -1))
    return ingress.with_warnings(plan, networks)


def _warnings(*openings: ingress.Opening, cidr: str = "10.81.3.0/24") -> list[tuple[str | None, str]]:
    plan = _minwon_plan({"MOIS": ingress.AgencyNetwork(cidr, openings)})
    return [(w.system, w.message.split(" needs ")[1].split(",")[0]) for w in plan.warnings]


def test_a_plan_warns_of_each_traffic_between_tiers_the_declared_ingress_drops() -> None:
    # minwon: Oracle + WebLogic + WebtoB -> db, app and web tiers: SSH, front->web 80, web->app 8080, app->db 5432.
    assert _warnings(_opening(22), _opening(80)) == [("minwon", "tcp 8080 from 10.81.3.0/24"),
                                                     ("minwon", "tcp 5432 from 10.81.3.0/24")]
    assert _warnings(_opening(22), _opening(80), _opening(8080, remote="10.81.0.0/16"),
                     _opening(5000, 6000, remote="10.81.3.0/24")) == []
    # From elsewhere than the agency's network, a rule does not admit the tiers' traffic to each other.
    assert _warnings(_opening(22), _opening(80), _opening(8080, remote="192.168.0.0/24"),
                     _opening(5432, remote="10.81.4.0/24")) == [("minwon", "tcp 8080 from 10.81.3.0/24"),
                                                                ("minwon", "tcp 5432 from 10.81.3.0/24")]
    # UDP does not carry TCP; a rule for every port and protocol admits everything.
    assert ("minwon", "tcp 22") in _warnings(_opening(22, protocol="udp"), _opening(80))
    assert _warnings(_opening(None, protocol="any")) == []


def test_warnings_do_not_stop_a_plan_and_are_listed_after_its_findings() -> None:
    plan = _minwon_plan({"MOIS": ingress.AgencyNetwork("10.81.3.0/24", (_opening(22),))})
    assert [f.code for f in plan.findings] == ["no_quota"]
    assert {w.code for w in plan.warnings} == {"ingress_not_declared"} and len(plan.warnings) == 3
    assert plan.to_dict()["warnings"][0]["field"] == "ingress"
    assert "Warnings (3): the plan can be applied, but this traffic would be dropped" in plan.render()
    assert "~ minwon ingress: the users' front to the web tier (nginx) needs tcp 80" in plan.render()
    # An agency the plan knows no network of (no tenancy) gets no warning: its no_quota finding says enough.
    assert _minwon_plan({}).warnings == ()


def test_only_the_tiers_a_system_has_need_traffic() -> None:
    app_only = planning.plan_system(_system("app", components=(HPUX, WEBLOGIC)), CATALOGUE, DEVCLOUD_FLAVORS)
    assert [port for _, port, _ in ingress.traffic_needs(app_only, "10.81.3.0/24")] == [22, 8080]
    db_only = planning.plan_system(_system("db", components=(HPUX, ORACLE), vcpus=2, ram_mb=2048), CATALOGUE,
                                 DEVCLOUD_FLAVORS)
    assert [port for _, port, _ in ingress.traffic_needs(db_only, "10.81.3.0/24")] == [22]
