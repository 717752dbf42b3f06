"""`controlplane waves ...` and the wave pages, around fake ports: the CLI runs the engine itself when nothing else
holds it, or hands the work to the server's engine and watches; progress bars per system; approvals from the CLI
and from the page (CSRF-checked); bad input exits 2 naming the field."""

# ruff: noqa: F811  (fixtures imported from migration_fakes are parameters of the tests)
from __future__ import annotations

import itertools
import json
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from conftest import PASSWORD
from jobs_fakes import ssh_private_key  # noqa: F401  (fixture)
from migration_fakes import EngineApp, engine_app, wave_body  # noqa: F401
from typer.testing import CliRunner

from controlplane.clock import Clock
from controlplane.composition import build_context, close_context
from controlplane.config import Settings
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.waves.models import Migration

CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')


@pytest.fixture
def cli(engine_app: EngineApp, settings: Any, monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path) -> Callable[..., tuple[int, str]]:
    """`controlplane ...` on the test databases; an engine it starts acts through the app's fakes."""
    app = engine_app
    monkeypatch.setenv("CP_ENV", "test")
    monkeypatch.setenv("CP_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("CP_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("CP_WORKFLOWS_DATABASE_URL", app.client.app.state.ctx.settings.workflows_database_url)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("controlplane.waves.cli.POLL_SECONDS", 0.05)
    from controlplane import cli as root

    @contextmanager
    def opened(settings: Settings, *, clock: Clock | None = None) -> Iterator[AppContext]:
        ctx = build_context(settings, clock=clock, cloud_gateway=app.cloud, playbook_runner=app.runner,
                            check_runner=app.checks)
        try:
            yield ctx
        finally:
            close_context(ctx)

    monkeypatch.setattr("controlplane.clikit.opened_context", opened)

    def run(*args: Any, raw: bool = False) -> tuple[int, str]:
        """(exit code, output as one line of words; with `raw`, as printed)."""
        result = CliRunner().invoke(root.app, [str(a) for a in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.output if raw else " ".join(re.sub(r"[│┃]", " ", result.output).split())

    return run


def _wave_file(app: EngineApp, tmp_path: Path, **overrides: Any) -> Path:
    path = tmp_path / "wave.json"
    path.write_text(json.dumps(wave_body(app.files, **overrides)))
    return path


@pytest.mark.parametrize("engine_on", [False])
def test_the_cli_runs_the_engine_itself_when_no_server_holds_it(engine_app, cli, tmp_path):
    app = engine_app
    code, out = cli("waves", "create", _wave_file(app, tmp_path))
    assert code == 0, out
    assert "wave 1 wave-1: 3 systems (t-db, t-app, t-web)" in out
    code, out = cli("waves", "run", 1, "--watch")
    assert code == 0, out
    assert "3 migrations queued" in out and "(the server runs them)" not in out
    assert "awaiting approval: t-db, t-app, t-web" in out
    assert "wave 1 wave-1: awaiting_approval" in out
    for system in ("t-db", "t-app", "t-web"):
        assert re.search(rf"{system} .*5/7|{system} .*4/6", out), out  # a bar per system: steps done of its steps
    code, out = cli("waves", "approve", 1, "--all")
    assert code == 0, out
    assert "cutover of t-db approved by cli" in out
    assert "t-db: cut over: the legacy side is kept (soak) until" in out
    assert "wave 1 wave-1: cut_over" in out
    assert "held migrations go on by themselves while `controlplane serve` or `controlplane worker` runs" in out
    code, out = cli("waves", "approve", 1, "--all")  # retired before the soak ends
    assert code == 0 and "retire of t-web approved by cli:root before its soak ended" in out, out
    assert "wave 1 wave-1: succeeded" in out
    code, out = cli("waves", "show", 1)
    assert code == 0 and out.count("succeeded") >= 4 and "t-app-app-1" in out, out
    code, out = cli("waves", "list")
    assert code == 0 and "wave-1 succeeded 3 succeeded" in out, out


def test_the_cli_hands_work_to_the_servers_engine_and_watches(engine_app, cli, tmp_path):
    app = engine_app
    assert cli("waves", "create", _wave_file(app, tmp_path))[0] == 0
    code, out = cli("waves", "run", 1)
    assert code == 0 and "3 migrations queued (the server runs them)" in out, out
    app.wait(1)
    code, out = cli("waves", "watch", 1)
    assert code == 0 and "wave 1 wave-1: awaiting_approval" in out, out
    app.runner.fail_host = "front-app"  # t-app's cutover will fail
    code, out = cli("waves", "approve", 1, "--system", "t-app", "--system", "t-db")
    assert code == 0, out
    app.wait(1)
    code, out = cli("waves", "watch", 1)
    assert code == 1, out
    assert "t-app: failed at cutover" in out and "front-app" in out
    code, out = cli("waves", "rollback", 1, "--system", "t-web")
    assert code == 0 and "rollback of t-web: provision" in out, out
    app.wait(1)
    assert app.migration(app.client.get("/api/v1/waves/1", headers=app.ops).json(), "t-web")["state"] == \
        "rolled_back"


STATE_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d (t-\w+) ([a-z_]+)(?: \((\w+)\))? (\d+)/(\d+)$")


@pytest.mark.parametrize("engine_on", [True, False])  # the server runs the wave, or this command
def test_a_watch_that_is_not_on_a_terminal_prints_a_line_per_change(engine_app, cli, tmp_path):
    app = engine_app
    assert cli("waves", "create", _wave_file(app, tmp_path))[0] == 0
    code, out = cli("waves", "run", 1, "--watch", raw=True)  # CliRunner's stdout is no terminal
    assert code == 0, out
    lines = out.splitlines()
    changes: dict[str, list[tuple[str, str | None, int, int]]] = {}
    for line in lines:
        if (found := STATE_LINE.match(line)) is not None:
            system, state, step, done, total = found.groups()
            changes.setdefault(system, []).append((state, step, int(done), int(total)))
    assert set(changes) == {"t-db", "t-app", "t-web"}, out
    for system, seen in changes.items():
        assert all(a != b for a, b in itertools.pairwise(seen)), (system, seen)  # only changes
        assert seen[-1][:2] == ("awaiting_approval", "cutover") and seen[-1][2] == seen[-1][3] - 2, (system, seen)
        assert [done for _, _, done, _ in seen] == sorted(done for _, _, done, _ in seen), (system, seen)
    last_change = max(i for i, line in enumerate(lines) if STATE_LINE.match(line))
    assert last_change < next(i for i, line in enumerate(lines) if line == "wave 1 wave-1: awaiting_approval")
    assert not any(re.search(r"━+ +\d+/\d+", line) for line in lines)  # no progress bar drawn into a log


def test_waves_show_folds_a_long_error_at_80_columns(engine_app, cli, tmp_path, monkeypatch):
    app = engine_app
    assert cli("waves", "create", _wave_file(app, tmp_path))[0] == 0
    wave = app.client.get("/api/v1/waves/1", headers=app.ops).json()
    error = ("task 'Switch the users front' on front-app failed: connection refused by 10.78.0.99 port 22 after "
             "3 attempts; the front stays on the legacy upstreams until an operator retries the cutover")
    with transaction(app.sessions) as session:
        migration = session.get(Migration, app.migration(wave, "t-app")["id"])
        assert migration is not None
        migration.error = error
    monkeypatch.setenv("COLUMNS", "80")
    code, out = cli("waves", "show", 1, raw=True)
    assert code == 0, out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= 80, out
    assert "…" not in out
    # The table with the detail column (the wave's own, or the one under it when a row does not fit 80 columns).
    header = next(i for i, line in enumerate(lines) if line.startswith("┃") and "detail" in line)
    column = [cell.strip() for cell in lines[header].split("┃")[1:-1]].index("detail")
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in lines[header + 2:]
            if line.startswith("│")]
    start = next(i for i, row in enumerate(rows) if row[0] == "t-app")
    cells = [rows[start][column]]
    for row in rows[start + 1:]:
        if row[0]:
            break
        cells.append(row[column])
    assert " ".join(cell for cell in cells if cell) == error, out  # whole, folded at spaces


def test_bad_input_exits_2_naming_the_field(engine_app, cli, tmp_path):
    app = engine_app
    code, out = cli("waves", "create", _wave_file(app, tmp_path, systems=["t-db", "nope"]))
    assert code == 2 and "error: systems: nope is not in the inventory" in out, out
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\nsystems: []\ncredential: hosts-root\n")
    code, out = cli("waves", "create", broken)
    assert code == 2 and "systems" in out, out
    code, out = cli("waves", "approve", 99, "--all")
    assert code == 2 and "no wave 99" in out, out
    assert cli("waves", "create", _wave_file(app, tmp_path))[0] == 0
    code, out = cli("waves", "approve", 1, "--system", "t-zz")
    assert code == 2 and "t-zz is not in wave 1" in out, out
    code, out = cli("waves", "approve", 1, "--system", "t-db")
    assert code == 2 and "cannot approve a migration that is pending" in out, out


def test_the_wave_pages_show_progress_and_take_approvals(engine_app):
    app = engine_app
    app.post("/waves", 201, json=wave_body(app.files))
    app.post("/waves/1/run")
    app.wait(1)
    client = app.client
    client.cookies.clear()
    assert client.post("/login", data={"username": "ops1", "password": PASSWORD, "next": "/waves"},
                       follow_redirects=False).status_code == 303
    listing = client.get("/waves")
    assert listing.status_code == 200 and "wave-1" in listing.text and "전환 승인 대기" in listing.text
    page = client.get("/waves/1")
    assert page.status_code == 200
    assert page.text.count('<progress max="7" value="5">') == 1 and page.text.count('value="4"') == 2
    assert "t-app 전환 승인" in page.text
    forged = client.post("/waves/1/approve", data={"csrf": "0" * 64,
                                                   "migration": app.migration(app.wait(1), "t-db")["id"]},
                         follow_redirects=False)
    assert forged.status_code == 403
    token = CSRF_RE.search(page.text)
    assert token is not None
    approved = client.post("/waves/1/approve", data={"csrf": token.group(1),
                                                     "migration": app.migration(app.wait(1), "t-db")["id"]},
                           follow_redirects=False)
    assert approved.status_code == 303 and approved.headers["location"] == "/waves/1"
    wave = app.until(1, {"t-db": "cut_over"})
    page = client.get("/waves/1?lang=en").text
    assert "cut over (soaking)" in page and "the legacy side is kept (soak) until 2014-07-02 12:00 (KST)" in page
    assert "Retire the legacy side of t-db now" in page
    retired = client.post("/waves/1/approve", data={"csrf": token.group(1),
                                                    "migration": app.migration(wave, "t-db")["id"]},
                          follow_redirects=False)
    assert retired.status_code == 303
    app.until(1, {"t-db": "succeeded"})
    english = client.get("/waves/1?lang=en").text
    assert "Progress per system" in english and "시스템별 진행" not in english
    client.cookies.clear()
    assert client.get("/waves/1", follow_redirects=False).status_code == 303


def test_the_pages_link_a_systems_waves_its_step_runs_jobs_and_their_hosts_servers(engine_app):
    from html import unescape

    app = engine_app
    app.post("/waves", 201, json=wave_body(app.files))
    app.post("/waves/1/run")
    wave = app.wait(1)
    migration = app.migration(wave, "t-app")
    client = app.client
    client.cookies.clear()
    assert client.post("/login", data={"username": "ops1", "password": PASSWORD, "next": "/waves"},
                       follow_redirects=False).status_code == 303

    # A system's page lists its migrations, each linking to its wave and to its row there.
    system = client.get("/systems/t-app")
    assert system.status_code == 200
    row = system.text.split(f'data-migration="{migration["id"]}"', 1)[1].split("</tr>", 1)[0]
    assert 'href="/waves/1">wave-1</a>' in row and f'href="/waves/1#migration-{migration["id"]}"' in row
    assert "전환 승인 대기" in row and 'id="no-migrations"' not in system.text
    page = client.get("/waves/1")
    assert f'id="migration-{migration["id"]}"' in page.text and 'href="/systems/t-app"' in page.text

    # Each step run links to its playbook jobs.
    jobs = [job for run in migration["step_runs"] for job in run["detail"].get("jobs", [])]
    assert jobs
    for job in jobs:
        assert f'<a href="/jobs/{job}" class="code" data-job="{job}">' in page.text

    # A job's hosts link to their servers on the agency's cloud page, which finds them by name or address.
    servers = {s.name for s in app.cloud.servers}
    linked = {}
    for job in jobs:
        html = client.get(f"/jobs/{job}").text
        linked |= {name: unescape(href) for href, name in
                   re.findall(r'<a href="(/cloud/MOIS\?[^"]+)" data-cloud="MOIS"[^>]*>([^<]+)</a>', html)}
    on_cloud = sorted(set(linked) & servers)
    assert on_cloud, (linked, servers)
    cloud_page = client.get(linked[on_cloud[0]])
    assert cloud_page.status_code == 200
    assert re.search(rf'<tr data-server="{on_cloud[0]}" id="host-match" class="matched"', cloud_page.text)


@pytest.mark.parametrize("engine_on", [False])
def test_the_cli_rolls_a_cut_over_system_back_once_confirmed_and_shows_its_dump(engine_app, cli, tmp_path):
    app = engine_app

    def dump(job: Any) -> None:  # the dump job brings the database and its measure back
        if job.extravars.get("data_migration_action") == "dump":
            (Path(job.extravars["cp_fetch_dir"]) / "t_db.sql").write_text("-- PostgreSQL database dump\n")
            (Path(job.extravars["cp_fetch_dir"]) / "t_db.changes.json").write_text('{"differences": []}')

    app.runner.on_run = dump
    assert cli("waves", "create", _wave_file(app, tmp_path, systems=["t-db"], inputs={
        "t-db": wave_body(app.files)["inputs"]["t-db"]}))[0] == 0
    assert cli("waves", "run", 1)[0] == 0
    code, out = cli("waves", "approve", 1, "--system", "t-db")
    assert code == 0 and "wave 1 wave-1: cut_over" in out, out
    code, out = cli("waves", "rollback", 1, "--system", "t-db")
    assert code == 2 and "confirm with confirm_writes_since_cutover" in out, out
    code, out = cli("waves", "rollback", 1, "--system", "t-db", "--confirm-writes-since-cutover")
    assert code == 0 and "wave 1 wave-1: rolled_back" in out, out
    code, out = cli("waves", "show", 1)
    assert code == 0 and "t-db: t_db dumped to " in out and "nothing differs from the source manifest" in out, out
