"""The migration inventory's command line (`controlplane systems|catalogue|adoption|plan`, in process on the test
database) and its pages (/systems, /systems/{code}, /adoption) in Korean and English, on SQLite and PostgreSQL."""
# ruff: noqa: F811  (pytest fixtures imported from migration_support are parameters of the tests)

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from migration_support import (  # noqa: F401  (fixtures)
    FLAGGED,
    SAMPLE_AGENCIES,
    add_tenancy,
    agencies,
    import_sample,
    inventory_yaml,
    operator,
    page_login,
    rows,
)
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from controlplane.clock import FixedClock
from controlplane.config import Settings
from controlplane.db import transaction
from controlplane.inventory import service as inventory
from controlplane.inventory.domain import ComponentKind, Criticality, Grade, SystemStatus
from controlplane.web.i18n import STRINGS

TEMPLATES = Path(__file__).resolve().parents[2] / "controlplane" / "web" / "templates"
Cli = Callable[..., tuple[str, str]]


# --- the command line ------------------------------------------------------------------------------

@pytest.fixture
def cli(settings: Settings, sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Cli:
    """`controlplane ...` on the test database: (stdout, stderr) of a run that must exit with `code`. The cloud is
    named but its clouds.yaml does not exist, so a plan never reaches a cloud."""
    monkeypatch.setenv("CP_ENV", "test")
    monkeypatch.setenv("CP_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("CP_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CP_CLOUD", settings.cloud)
    monkeypatch.setenv("CP_CLOUDS_YAML", str(tmp_path / "missing-clouds.yaml"))
    monkeypatch.setenv("COLUMNS", "250")
    from controlplane.cli import app

    def run(*args: object, code: int = 0) -> tuple[str, str]:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == code, f"{result.output}\n{result.exception!r}"
        return result.stdout, result.stderr

    return run


def _words(text: str) -> str:
    """One line of words: tables lose their borders, long lines their wrapping."""
    return " ".join(re.sub(r"[\u2500-\u257f]", " ", text).split())


def test_cli_sample_needs_the_seeded_agencies(cli: Cli) -> None:
    _out, err = cli("systems", "sample", code=2)
    assert (f"the sample needs the agencies {', '.join(SAMPLE_AGENCIES)}, which are not in the database: "
            "`controlplane seed` loads the agency catalogue") in _words(err)


def test_cli_systems_sample_list_export_and_import(cli: Cli, agencies: None, tmp_path: Path) -> None:
    out, _err = cli("systems", "sample")
    words = _words(out)
    assert "imported 51 systems from sample_inventory.yaml (merge): 51 created, 0 updated, 0 unchanged, 0 deleted" \
        in words
    assert "flagged (5): components the catalogue 2026.1 does not know" in words
    assert all(f"! {system} {field}:" in words for system, field, _code in FLAGGED)
    assert "0 created, 0 updated, 51 unchanged" in _words(cli("systems", "sample")[0])

    listing = _words(cli("systems", "list", "--agency", "MOIS")[0])
    assert "Systems (9)" in listing and "moef-" not in listing
    assert "mois-minwon MOIS 민원처리 critical legacy" in listing and "MiPlatform 3.3 1" in listing
    assert "Systems (1)" in _words(cli("systems", "list", "--status", "migrated")[0])
    assert "agency: unknown agency 'NOPE'" in _words(cli("systems", "list", "--agency", "NOPE", code=2)[1])

    exported = tmp_path / "systems.yaml"
    assert cli("systems", "export", "--format", "yaml", "-o", exported) == ("", "")
    dry = _words(cli("systems", "import", exported, "--mode", "replace", "--dry-run")[0])
    assert "would import 51 systems from systems.yaml (replace): 0 created, 0 updated, 51 unchanged, 0 deleted" in dry
    csv_out = cli("systems", "export", "--agency", "SEOUL")[0]
    assert csv_out.splitlines()[0].startswith("code,agency,name_ko,name_en,criticality")
    assert len(csv_out.splitlines()) == 8

    small = tmp_path / "small.yaml"
    small.write_text(inventory_yaml({"code": "mois-gpki", "criticality": "critical",
                                     "maintenance_window": "Sun 02:00-06:00"}), encoding="utf-8")
    replaced = _words(cli("systems", "import", small, "--mode", "replace", "--dry-run")[0])
    assert "would import 1 systems from small.yaml (replace): 0 created, 1 updated, 0 unchanged, 50 deleted" \
        in replaced
    assert "updated: mois-gpki" in replaced and "deleted: busan-acct, busan-edms" in replaced

    bad = tmp_path / "bad.csv"
    bad.write_text("code,agency,name_en,criticality,vcpus,ram_mb,disk_gb,components\n"
                   "ok-one,MOIS,Fine,low,1,1024,10,os:IBM:AIX:7.1\n"
                   "bad-one,ATLANTIS,Bad,urgent,1,1024,10,os:IBM:AIX:7.1\n", encoding="utf-8")
    out, err = cli("systems", "import", bad, code=2)
    errors = _words(err)
    assert out == "" and "error: file: 2 problem(s); nothing was imported" in errors
    assert "row 3 bad-one criticality: 'urgent' must be one of critical, high, medium, low" in errors
    assert "row 3 bad-one agency: unknown agency 'ATLANTIS'" in errors
    assert "agencies not in the database: ATLANTIS" in errors
    assert "Systems (51)" in _words(cli("systems", "list")[0])


def test_cli_catalogue_and_adoption(cli: Cli, agencies: None) -> None:
    catalogue = _words(cli("catalogue", "show")[0])
    assert "Component catalogue 2026.1 (32 entries)" in catalogue
    assert ("oracle-database db Oracle Oracle Database / Oracle DB / Oracle RDBMS / Oracle 9–21 PostgreSQL 15 "
            "postgresql B no") in catalogue
    cli("systems", "sample")
    adoption = _words(cli("adoption")[0])
    assert "MOIS 38 14 34 1 36.8% 89.5%" in adoption and "ALL 207 65 188 5 31.4% 90.8%" in adoption


def test_cli_plan_prints_the_plan_and_exits_by_its_findings(
        cli: Cli, agencies: None, sessions: sessionmaker[Session], clock: FixedClock, settings: Settings) -> None:
    cli("systems", "sample")
    out, err = cli("plan", "--system", "mois-gpki", code=1)
    assert "Findings (1): the plan cannot be applied until they are resolved" in out
    assert "! mois-gpki agency: MOIS has no quota on the cloud (is it onboarded?)" in out
    assert "note: cloud 'devcloud' not read" in _words(err).replace(settings.cloud, "devcloud")

    add_tenancy(sessions, clock, cloud=settings.cloud, agency="MOIS")
    out, _err = cli("plan", "--system", "mois-gpki")
    with transaction(sessions) as session:
        expected = inventory.plan_systems(session, viewer="test", cloud=settings.cloud, cached=None,
                                          codes=["mois-gpki"])
    assert expected.ok and out == expected.text + "\n"
    assert out.startswith("Migration plan (catalogue 2026.1): 1 systems in 1 waves\n")

    waves, _err = cli("plan", "--wave", "mois-sso", "--wave", "mois-gpki,", code=1)
    assert "mois-sso wave: in wave 1, it depends on mois-gpki in wave 2" in waves
    assert "give the systems or the waves to plan, not both" in _words(
        cli("plan", "--system", "mois-gpki", "--wave", "mois-sso", code=2)[1])
    assert "--wave: a wave lists system codes separated by ','" in cli("plan", "--wave", " , ", code=2)[1]


# --- pages -----------------------------------------------------------------------------------------

def test_the_inventory_pages_in_korean_and_english(client: TestClient, operator: dict[str, str]) -> None:
    import_sample(client, operator)
    page_login(client, "ops1")
    listing = client.get("/systems")
    assert listing.status_code == 200
    nav = listing.text.split('class="main-nav"', 1)[1]
    assert 'href="/systems" aria-current="page"' in nav and 'href="/adoption"' in nav
    assert "<h1>기관 시스템</h1>" in listing.text and "51개 시스템" in listing.text
    assert len(rows(listing.text, "data-system")) == 51
    row = listing.text.split('data-system="mois-minwon"', 1)[1].split("</tr>", 1)[0]
    assert "민원처리" in row and "핵심" in row and "이관 전" in row and "MiPlatform 3.3" in row and "미확인 1개" in row
    english = client.get("/systems?lang=en")
    assert "<h1>Agency systems</h1>" in english.text and "1 unknown" in english.text and "critical" in english.text
    assert len(rows(client.get("/systems?agency=MOIS").text, "data-system")) == 9
    assert rows(client.get("/systems?status=migrated").text, "data-system") == ["mois-addr"]
    bad = client.get("/systems?status=exploded")
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("text/html") and "status" in bad.text

    detail = client.get("/systems/mois-minwon?lang=ko")
    assert detail.status_code == 200
    assert 'id="unknown-components"' in detail.text and "카탈로그에 없음" in detail.text
    assert 'data-component="4" data-flag="unknown_component"' in detail.text
    tibero = detail.text.split('data-component="1"', 1)[1].split("</tr>", 1)[0]
    assert "tibero" in tibero and "PostgreSQL 15" in tibero and "B (일부 수작업)" in tibero
    assert 'href="/systems/mois-sso"' in detail.text and "작업 가능 시간" in detail.text
    assert 'id="no-migrations"' in detail.text  # no wave migrates it yet
    english = client.get("/systems/mois-gpki?lang=en")
    assert "Maintenance window" in english.text and "Sun 02:00-06:00" in english.text
    assert "not in the catalogue" not in english.text and "Government PKI certificate management" in english.text
    assert client.get("/systems/nope").status_code == 404

    adoption = client.get("/adoption?lang=ko")
    assert adoption.status_code == 200 and "<h1>오픈소스 전환율</h1>" in adoption.text
    assert rows(adoption.text, "data-agency") == [*SAMPLE_AGENCIES, "ALL"]
    total = adoption.text.split('data-agency="ALL"', 1)[1].split("</tr>", 1)[0]
    assert "전체 기관" in total and "31.4% (65개)" in total and "90.8% (188개)" in total
    assert "Open source after migration" in client.get("/adoption?lang=en").text


def test_the_inventory_pages_for_a_ministry_and_a_secretariat(
        client: TestClient, operator: dict[str, str], make_user: Callable[..., str]) -> None:
    import_sample(client, operator)
    make_user("mois-page", "ministry", "MOIS")
    page_login(client, "mois-page")
    assert {code.split("-")[0] for code in rows(client.get("/systems").text, "data-system")} == {"mois"}
    assert client.get("/systems/moef-dbrain").status_code == 404
    assert rows(client.get("/adoption").text, "data-agency") == ["MOIS", "ALL"]

    make_user("sec-page", "secretariat")
    page_login(client, "sec-page")
    refused = client.get("/systems")
    assert refused.status_code == 403 and 'href="/systems"' not in refused.text
    assert client.get("/adoption").status_code == 403
    client.cookies.clear()
    assert client.get("/systems", follow_redirects=False).headers["location"] == "/login?next=%2Fsystems"


def test_every_string_of_the_inventory_pages_is_in_korean_and_english() -> None:
    keys = {key for name in ("systems.html", "system_detail.html", "adoption.html")
            for key in re.findall(r"t\('([a-z_.0-9A-Z]+)'\s*[,)]", (TEMPLATES / name).read_text(encoding="utf-8"))}
    keys |= {f"sstatus.{s}" for s in SystemStatus} | {f"crit.{c}" for c in Criticality}
    keys |= {f"ckind.{k}" for k in ComponentKind} | {f"grade.{g}" for g in Grade} | {"nav.systems", "nav.adoption"}
    assert sorted(k for k in keys if set(STRINGS.get(k, {})) != {"ko", "en"}) == []
