"""The real `controlplane` command line, run as a subprocess against a temporary SQLite database."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from openpyxl import load_workbook

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / "controlplane"
PASSWORD = "Cli-password-2014"


def _env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CP_")}
    # A wide console, so that long messages are not wrapped mid-word.
    env.update(COLUMNS="250", CP_ENV="test", CP_DATA_DIR=str(directory),
               CP_DATABASE_URL=f"sqlite:///{directory / 'cp.db'}")
    return env


def _cli(directory: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "controlplane", *args], cwd=REPO_ROOT, env=_env(directory), input=stdin,
        capture_output=True, text=True, timeout=120, check=False,
    )


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _query(directory: Path, sql: str, *params: object) -> list[tuple]:
    with sqlite3.connect(directory / "cp.db") as conn:
        return conn.execute(sql, params).fetchall()


def _copy_db(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("cp.db", "cp.db-wal", "cp.db-shm"):
        if (source / name).exists():
            shutil.copy(source / name, target / name)
    return target


def _write_csv(path: Path, rows: list[list[str]]) -> Path:
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["meeting_code", "held_on", "mode", "status"])
        writer.writerows(rows)
    return path


SETUP_OUTPUT: dict[Path, tuple[str, str]] = {}


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database made by `db upgrade` then `seed`: the real catalogue (copied per test that writes)."""
    directory = tmp_path_factory.mktemp("seeded")
    SETUP_OUTPUT[directory] = (_ok(_cli(directory, "db", "upgrade")), _ok(_cli(directory, "seed")))
    return directory


@pytest.fixture
def db(seeded: Path, tmp_path: Path) -> Path:
    return _copy_db(seeded, tmp_path / "db")


# Sessions of 2014 for meetings of the real catalogue (all designated since 2011, hosted by OPM and MOIS).
SESSIONS = [
    ["CAB-WEEKLY", "2014-01-07", "video", "held"],
    ["CAB-WEEKLY", "2014-01-14", "in_person", "held"],
    ["CAB-WEEKLY", "2014-01-21", "hybrid", "held"],
    ["VICE-MIN-WEEKLY", "2014-01-09", "in_person", "held"],
]


@pytest.fixture(scope="module")
def reported(seeded: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seeded database with the sessions above imported; only read by the report tests."""
    directory = _copy_db(seeded, tmp_path_factory.mktemp("reported"))
    _ok(_cli(directory, "compliance", "import", str(_write_csv(directory / "s.csv", SESSIONS))))
    return directory


def test_help_lists_the_command_groups(tmp_path):
    out = _ok(_cli(tmp_path, "--help"))
    for command in ("serve", "db", "users", "compliance", "seed"):
        assert re.search(rf"\b{command}\b", out), command


def test_db_upgrade_then_seed_twice_creates_nothing_the_second_time(seeded, db):
    upgraded, first = SETUP_OUTPUT[seeded]
    assert "head" in upgraded
    tables = {name for (name,) in _query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"agencies", "users", "meetings", "meeting_sessions", "compliance_policies", "audit_log"} <= tables

    agencies = len(yaml.safe_load((DATA / "auth/data/agencies.yaml").read_text(encoding="utf-8")))
    meetings = len(yaml.safe_load((DATA / "compliance/data/designated_meetings.yaml").read_text(encoding="utf-8")))
    assert f"{agencies} new agencies" in first and "2 new policies" in first and f"{meetings} new meetings" in first

    def counts() -> list[int]:
        return [_query(db, f"SELECT count(*) FROM {t}")[0][0]
                for t in ("agencies", "compliance_policies", "meetings", "meeting_participants", "audit_log")]

    before = counts()
    assert before[:3] == [agencies, 2, meetings]
    second = _ok(_cli(db, "seed"))
    assert re.search(r"\b0 new agencies, 0 new policies, 0 new meetings\b", second), second
    assert counts() == before


def test_users_create_reads_the_password_from_stdin(db):
    result = _cli(db, "users", "create", "--username", "mois.clerk", "--role", "ministry", "--agency", "MOIS",
                  "--password-stdin", stdin=PASSWORD + "\n")
    out = _ok(result)
    assert "mois.clerk" in out
    assert PASSWORD not in result.stdout + result.stderr
    [(role, agency, password_hash, active)] = _query(
        db, "SELECT u.role, a.code, u.password_hash, u.active FROM users u JOIN agencies a ON a.id = u.agency_id "
            "WHERE u.username = ?", "mois.clerk")
    assert (role, agency, active) == ("ministry", "MOIS", 1)
    assert password_hash.startswith("$argon2") and PASSWORD not in password_hash
    [(after,)] = _query(db, "SELECT after FROM audit_log WHERE entity_type = 'user' AND action = 'create'")
    assert PASSWORD not in after and "$argon2" not in after


def test_users_create_with_a_bad_role_fails_clearly(db):
    result = _cli(db, "users", "create", "--username", "wizard1", "--role", "wizard", "--password-stdin",
                  stdin=PASSWORD + "\n")
    assert result.returncode != 0
    assert "--role" in result.stderr and "wizard" in result.stderr
    assert "Traceback" not in result.stderr
    assert _query(db, "SELECT count(*) FROM users") == [(0,)]


def test_users_create_ministry_without_agency_names_agency_code(db):
    result = _cli(db, "users", "create", "--username", "lost.clerk", "--role", "ministry", "--password-stdin",
                  stdin=PASSWORD + "\n")
    assert result.returncode != 0
    assert "agency_code" in result.stderr
    assert "Traceback" not in result.stderr
    assert _query(db, "SELECT count(*) FROM users") == [(0,)]


@pytest.mark.parametrize("args,password,needle", [
    (["--username", "weak.user", "--role", "operator"], "short", "12 characters"),
    (["--username", "x", "--role", "operator"], PASSWORD, "[a-z0-9]"),
])
def test_users_create_refuses_bad_input_with_the_reason(db, args, password, needle):
    result = _cli(db, "users", "create", *args, "--password-stdin", stdin=password + "\n")
    assert result.returncode != 0
    assert needle in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    assert _query(db, "SELECT count(*) FROM users") == [(0,)]


def test_compliance_import_of_a_good_file(db, tmp_path):
    out = _ok(_cli(db, "compliance", "import", str(_write_csv(tmp_path / "good.csv", SESSIONS))))
    assert "imported 4 sessions" in out
    assert _query(db, "SELECT count(*) FROM meeting_sessions") == [(4,)]
    [(actor, after)] = _query(db, "SELECT actor, after FROM audit_log WHERE action = 'import'")
    assert actor.startswith("cli:") and "good.csv" in after


def test_compliance_import_of_a_bad_file_prints_every_bad_row(db, tmp_path):
    path = _write_csv(tmp_path / "bad.csv", [
        ["CAB-WEEKLY", "2014-01-07", "video", "held"],       # row 2: good
        ["NO-SUCH-MEETING", "2014-01-08", "video", "held"],  # row 3
        ["CAB-WEEKLY", "2014-02-30", "video", "held"],       # row 4
        ["CAB-WEEKLY", "2014-01-28", "smoke-signal", ""],    # row 5
        ["CAB-WEEKLY", "2014-01-07", "in_person", "held"],   # row 6: duplicate of row 2
    ])
    result = _cli(db, "compliance", "import", str(path))
    assert result.returncode == 1, result.stdout + result.stderr
    for row, field in [(3, "meeting_code"), (4, "held_on"), (5, "mode"), (6, "held_on")]:
        assert re.search(rf"row {row}: {field}\b", result.stderr), (row, result.stderr)
    assert "row 2:" not in result.stderr
    assert "imported" not in result.stdout
    assert _query(db, "SELECT count(*) FROM meeting_sessions") == [(0,)]


def test_compliance_import_prints_bad_rows_verbatim(db, tmp_path):
    # Values from the file are data, never console markup.
    path = _write_csv(tmp_path / "markup.csv", [["[/x]", "2014-01-08", "video", "held"],
                                                ["[bold]X[/bold]", "2014-01-09", "video", "held"]])
    result = _cli(db, "compliance", "import", str(path))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "row 2: meeting_code" in result.stderr and "[/x]" in result.stderr
    assert "row 3: meeting_code" in result.stderr and "[bold]X[/bold]" in result.stderr


def test_compliance_import_refuses_a_missing_or_unreadable_file(db, tmp_path):
    missing = _cli(db, "compliance", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode != 0 and "nope.csv" in missing.stderr
    wrong = tmp_path / "sessions.txt"
    wrong.write_text("meeting_code,held_on,mode\n", encoding="utf-8")
    result = _cli(db, "compliance", "import", str(wrong))
    assert result.returncode == 1 and ".csv or .xlsx" in result.stderr


def _government(rows: list[dict]) -> dict:
    [government] = [r for r in rows if r["scope"] == "government"]
    return government


def test_compliance_report_csv_parses_back(reported):
    out = _ok(_cli(reported, "compliance", "report", "--period", "2014", "--format", "csv"))
    rows = list(csv.DictReader(io.StringIO(out)))
    government = _government(rows)
    # 4 held: video, in person, hybrid (counts in 2014), in person: 2 of 4; required ceil(0.5 * 4) = 2.
    assert (government["key"], government["held"], government["video"], government["share"],
            government["target"], government["required"], government["status"]) == \
        ("ALL", "4", "2", "0.5", "0.5", "2", "on_track")
    opm = next(r for r in rows if r["key"] == "OPM")
    assert (opm["held"], opm["video"]) == ("4", "2")
    assert len({r["key"] for r in rows if r["scope"] == "ministry"}) > 20


def test_compliance_report_xlsx_output_opens(reported, tmp_path):
    target = tmp_path / "f.xlsx"
    _ok(_cli(reported, "compliance", "report", "--period", "2014-Q1", "--format", "xlsx", "--output", str(target)))
    workbook = load_workbook(target, read_only=True)
    values = list(workbook.worksheets[0].iter_rows(values_only=True))
    workbook.close()
    header = list(values[0])
    government = dict(zip(header, values[1], strict=False))
    assert (government["period"], government["scope"], government["held"], government["video"],
            government["share"]) == ("2014-Q1", "government", 4, 2, 0.5)


def test_compliance_report_table_has_the_government_row(reported):
    out = _ok(_cli(reported, "compliance", "report", "--period", "2014", "--format", "table"))
    line = next(line for line in out.splitlines() if "government" in line)
    assert "ALL" in line and "50.0%" in line and "on_track" in line


def test_compliance_report_bad_period_exits_2_with_the_reason(reported):
    result = _cli(reported, "compliance", "report", "--period", "2014-13", "--format", "csv")
    assert result.returncode == 2
    assert "2014-13" in result.stderr and "YYYY" in result.stderr
    assert result.stdout == ""


def test_compliance_report_unknown_ministry_fails_with_a_message(reported):
    result = _cli(reported, "compliance", "report", "--period", "2014", "--ministry", "UNKNOWN", "--format", "csv")
    assert result.returncode != 0
    assert "UNKNOWN" in result.stderr
    assert "Traceback" not in result.stderr


def test_prod_refuses_weak_secret_without_echoing_it(tmp_path):
    weak = "weak-but-private-value"
    env = _env(tmp_path) | {"CP_ENV": "prod", "CP_SECRET_KEY": weak}
    result = subprocess.run([sys.executable, "-m", "controlplane", "serve", "--port", "1"], cwd=REPO_ROOT,
                            env=env, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert "CP_SECRET_KEY" in result.stderr
    assert weak not in result.stdout + result.stderr
