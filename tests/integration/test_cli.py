"""The `controlplane` command line against a temporary SQLite database: its commands run in this process through
typer's runner (the same app, its settings read from the same environment variables, stdin, stdout, stderr and the
exit code as a shell sees them); the entry point itself (`python -m controlplane`, `serve`) runs as a process."""

from __future__ import annotations

import csv
import io
import os
import re
import shutil
import sqlite3
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import yaml
from openpyxl import load_workbook
from typer.testing import CliRunner

from controlplane.cli import app

REPO_ROOT = Path(__file__).resolve().parents[2]
DATA = REPO_ROOT / "controlplane"
PASSWORD = "Cli-password-2014"


def _env(directory: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CP_")}
    # A wide console, so that long messages are not wrapped mid-word.
    env.update(COLUMNS="250", CP_ENV="test", CP_DATA_DIR=str(directory),
               CP_DATABASE_URL=f"sqlite:///{directory / 'cp.db'}")
    return env


def _process(directory: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """`python -m controlplane ARGS` as a process of its own."""
    return subprocess.run([sys.executable, "-m", "controlplane", *args], cwd=REPO_ROOT, env=_env(directory) | env,
                          capture_output=True, text=True, timeout=120, check=False)


def _cli(directory: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    """`controlplane ARGS` in this process, with the environment a process would get (no other CP_ variable)."""
    env: dict[str, str | None] = {name: None for name in os.environ if name.startswith("CP_")}
    result = CliRunner().invoke(app, list(args), input=stdin, env=env | _env(directory), catch_exceptions=True)
    stderr = result.stderr
    if result.exc_info is not None and not isinstance(result.exception, SystemExit):  # as Python prints it
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["controlplane", *args], result.exit_code, result.stdout, stderr)


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
    out = _ok(_process(tmp_path, "--help"))
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
    assert result.returncode == 2, result.stdout + result.stderr  # bad input
    assert result.stderr.startswith("error: file: 4 bad row(s); nothing was imported"), result.stderr
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
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "row 2: meeting_code" in result.stderr and "[/x]" in result.stderr
    assert "row 3: meeting_code" in result.stderr and "[bold]X[/bold]" in result.stderr


def test_compliance_import_refuses_a_missing_or_unreadable_file(db, tmp_path):
    missing = _cli(db, "compliance", "import", str(tmp_path / "nope.csv"))
    assert missing.returncode != 0 and "nope.csv" in missing.stderr
    wrong = tmp_path / "sessions.txt"
    wrong.write_text("meeting_code,held_on,mode\n", encoding="utf-8")
    result = _cli(db, "compliance", "import", str(wrong))
    assert result.returncode == 2 and "error: file: the file must be .csv or .xlsx" in result.stderr


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
    result = _process(tmp_path, "serve", "--port", "1", CP_ENV="prod", CP_SECRET_KEY=weak)
    assert result.returncode == 2
    assert "CP_SECRET_KEY" in result.stderr
    assert weak not in result.stdout + result.stderr


# --- the command-line kit: exit codes, error lines, the onboarding spec, the writes of the API -------------------

SPEC_YAML = """\
quotas: {instances: 5, cores: 10, ram_mb: 8192, volumes: 2}
cidr: 10.81.7.0/24
ingress:
  - {protocol: tcp, port_min: 22, port_max: 22, remote_cidr: 10.0.0.0/8}
"""


def _error_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


def test_cloud_spec_is_set_from_a_file_refused_with_the_field_and_shown_back(db, tmp_path):
    assert _cli(db, "cloud", "spec", "MOIS").returncode == 2  # none yet
    bad = tmp_path / "bad.yaml"
    bad.write_text("quotas: {instances: -1}\ningress:\n  - {protocol: tcp, port_min: 70000, remote_cidr: 10.0.0.0/8}\n"
                   "colour: red\n", encoding="utf-8")
    refused = _cli(db, "cloud", "spec", "MOIS", "--file", str(bad))
    assert refused.returncode == 2, refused.stderr
    assert _error_lines(refused) == ["error: quotas.instances: Input should be greater than or equal to 0",
                                     "error: ingress.0.port_min: Input should be less than or equal to 65535",
                                     "error: colour: Extra inputs are not permitted"]
    public = tmp_path / "public.json"
    public.write_text('{"cidr": "8.8.8.0/24"}', encoding="utf-8")  # JSON too; the domain's rule names the field
    refused = _cli(db, "cloud", "spec", "MOIS", "--file", str(public))
    assert refused.returncode == 2 and _error_lines(refused)[0].startswith("error: cidr: 8.8.8.0/24 must be"), \
        refused.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("[1, 2\n", encoding="utf-8")
    refused = _cli(db, "cloud", "spec", "MOIS", "--file", str(broken))
    assert refused.returncode == 2 and "error: --file: " in refused.stderr and "not valid YAML (line" in refused.stderr
    assert _query(db, "SELECT count(*) FROM cloud_tenancies") == [(0,)]

    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML, encoding="utf-8")
    out = _ok(_cli(db, "cloud", "spec", "MOIS", "--file", str(spec)))
    assert "created the onboarding spec of MOIS on devcloud: cidr 10.81.7.0/24, 1 ingress rule(s)" in out
    shown = _ok(_cli(db, "cloud", "spec", "MOIS"))
    assert yaml.safe_load(shown) == {"quotas": {"instances": 5, "cores": 10, "ram_mb": 8192, "volumes": 2},
                                     "cidr": "10.81.7.0/24", "public_key": None,
                                     "ingress": [{"protocol": "tcp", "port_min": 22, "port_max": 22,
                                                  "remote_cidr": "10.0.0.0/8"}]}
    again = tmp_path / "again.yaml"  # what it shows is what it reads
    again.write_text(shown, encoding="utf-8")
    assert "set the onboarding spec of MOIS" in _ok(_cli(db, "cloud", "spec", "MOIS", "--file", str(again)))
    [(actor, action)] = _query(db, "SELECT actor, action FROM audit_log WHERE entity_type = 'cloud_tenancy'")
    assert actor.startswith("cli:") and action == "create"  # the unchanged spec left no second row


def test_exit_codes_and_error_lines(db, tmp_path):
    unknown = _cli(db, "users", "unlock", "nobody")
    assert unknown.returncode == 2 and _error_lines(unknown) == ["error: username: unknown user 'nobody'"]
    agency = _cli(db, "cloud", "spec", "NOPE")
    assert agency.returncode == 2 and _error_lines(agency) == ["error: agency: unknown agency 'NOPE'"]
    no_spec = _cli(db, "cloud", "plan", "MOIS")
    assert no_spec.returncode == 2, no_spec.stderr
    assert _error_lines(no_spec) == ["error: agency: agency MOIS has no onboarding spec on cloud 'devcloud': set it "
                                     "with `controlplane cloud spec MOIS --file spec.yaml` first"]
    taken = _cli(db, "agencies", "create", "--code", "MOIS", "--name-ko", "행정안전부", "--name-en", "MOIS",
                 "--kind", "ministry")
    assert taken.returncode == 2 and _error_lines(taken) == ["error: agency: agency 'MOIS' exists already"]

    # A failure that is not the input's: the cloud cannot be reached (exit 1).
    spec = tmp_path / "spec.yaml"
    spec.write_text(SPEC_YAML, encoding="utf-8")
    _ok(_cli(db, "cloud", "spec", "MOIS", "--file", str(spec)))
    failed = _process(db, "cloud", "plan", "MOIS", CP_CLOUDS_YAML=str(tmp_path / "missing-clouds.yaml"))
    assert failed.returncode == 1, failed.stderr
    assert _error_lines(failed) == [f"error: cloud 'devcloud': the clouds.yaml file {tmp_path / 'missing-clouds.yaml'} "
                                    "does not exist (CP_CLOUDS_YAML)"]
    for result in (unknown, agency, no_spec, taken, failed):  # never the error's code, never a traceback
        assert not re.search(r"error: (code|not_found|conflict|cloud_unavailable|invalid)\b", result.stderr)
        assert "Traceback" not in result.stderr


def test_the_writes_of_the_api_have_commands(db, tmp_path):
    out = _ok(_cli(db, "agencies", "create", "--code", "NEWAG", "--name-ko", "신설청", "--name-en", "New Agency",
                   "--kind", "agency", "--parent", "MOIS"))
    assert "created agency NEWAG (agency)" in out
    assert "updated agency NEWAG (office)" in _ok(_cli(db, "agencies", "update", "NEWAG", "--kind", "office"))
    _ok(_cli(db, "users", "create", "--username", "clerk1", "--role", "operator", "--password-stdin",
             stdin=PASSWORD + "\n"))
    out = _ok(_cli(db, "users", "update", "clerk1", "--role", "ministry", "--agency", "NEWAG", "--inactive"))
    assert "updated user 'clerk1' (ministry, agency NEWAG, inactive)" in out
    weak = _cli(db, "users", "update", "clerk1", "--password-stdin", stdin="short\n")
    assert weak.returncode == 2 and "error: password: " in weak.stderr and "short" not in weak.stderr

    added = _ok(_cli(db, "compliance", "sessions", "add", "--meeting", "CAB-WEEKLY", "--held-on", "2014-01-07",
                     "--mode", "video"))
    [(session_id,)] = _query(db, "SELECT id FROM meeting_sessions")
    assert f"recorded session {session_id}: CAB-WEEKLY on 2014-01-07 (video, held)" in added
    bad_day = _cli(db, "compliance", "sessions", "add", "--meeting", "CAB-WEEKLY", "--held-on", "2014-02-30",
                   "--mode", "video")
    assert bad_day.returncode == 2 and "error: held_on: " in bad_day.stderr and "(--held-on)" in bad_day.stderr
    twin = _cli(db, "compliance", "sessions", "add", "--meeting", "CAB-WEEKLY", "--held-on", "2014-01-07",
                "--mode", "hybrid")
    assert twin.returncode == 2 and "error: held_on: meeting 'CAB-WEEKLY' already has a session" in twin.stderr
    assert "(hybrid, held)" in _ok(_cli(db, "compliance", "sessions", "update", str(session_id), "--mode", "hybrid"))
    assert f"deleted session {session_id}" in _ok(_cli(db, "compliance", "sessions", "delete", str(session_id)))

    meeting = tmp_path / "meeting.yaml"
    meeting.write_text("code: NEW-WEEKLY\nname_ko: 신설 회의\nname_en: New weekly\nhost: MOIS\nparticipants: [NEWAG]\n"
                       "cadence: weekly\ndesignated_from: 2015-01-01\n", encoding="utf-8")
    assert "created meeting NEW-WEEKLY (New weekly), hosted by MOIS" in _ok(
        _cli(db, "compliance", "meetings", "create", "--file", str(meeting)))
    change = tmp_path / "change.yaml"
    change.write_text("active: false\n", encoding="utf-8")
    assert "inactive" in _ok(_cli(db, "compliance", "meetings", "update", "NEW-WEEKLY", "--file", str(change)))
    missing = _cli(db, "compliance", "meetings", "update", "NOPE-MEETING", "--file", str(change))
    assert missing.returncode == 2 and _error_lines(missing) == ["error: meeting: unknown meeting 'NOPE-MEETING'"]

    [(policy_id,)] = _query(db, "SELECT id FROM compliance_policies WHERE effective_until IS NULL")
    overlap = _cli(db, "compliance", "policies", "add", "--from", "2030-01-01", "--meetings", "200",
                   "--target-percent", "60")
    assert overlap.returncode == 2 and "error: effective_from: overlaps the policy in force" in overlap.stderr
    assert f"ended policy {policy_id}" in _ok(_cli(db, "compliance", "policies", "end", str(policy_id), "--until",
                                                   "2029-12-31"))
    assert "60% of 200 designated meetings by video from 2030-01-01" in _ok(
        _cli(db, "compliance", "policies", "add", "--from", "2030-01-01", "--meetings", "200", "--target-percent",
             "60"))
    written = _query(db, "SELECT entity_type, action, actor FROM audit_log WHERE (entity_type, entity_id) IN "
                         "(('agency', 'NEWAG'), ('user', 'clerk1'), ('session', ?), ('meeting', 'NEW-WEEKLY')) "
                         "ORDER BY id", str(session_id))
    assert [(kind, action) for kind, action, _ in written] == [
        ("agency", "create"), ("agency", "update"), ("user", "create"), ("user", "update"),
        ("user", "revoke_credentials"), ("session", "create"), ("session", "update"), ("session", "delete"),
        ("meeting", "create"), ("meeting", "update")]
    assert all(actor.startswith("cli:") for _, _, actor in written)
