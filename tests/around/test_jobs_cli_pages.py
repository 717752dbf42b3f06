"""The jobs layer's command line and pages around the runner and check ports: `controlplane credentials ...` and
`controlplane jobs ...` (run here, or watched and canceled while the server runs them), the /jobs, /jobs/{id} and
/credentials pages with their permissions, CSRF, cancel form and live event stream, with the fakes of
tests/around/jobs_fakes.py injected (on both databases)."""
# ruff: noqa: F811  (pytest fixtures imported from jobs_fakes are parameters of the tests)

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import PASSWORD
from jobs_fakes import HOSTS, SECRET, automation, headers, operator, ssh_private_key  # noqa: F401
from jobs_fakes import job_request as _job
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker
from typer.testing import CliRunner

from controlplane.auth.models import AuditEntry
from controlplane.automation.models import Job
from controlplane.db import transaction

CSRF_RE = re.compile(r'name="csrf" value="([0-9a-f]{64})"')
NONCE_RE = re.compile(r'<script nonce="([^"]+)">')


# --- helpers -----------------------------------------------------------------------------------------------

def _start(automation: Any, operator: dict[str, str], **overrides: Any) -> str:
    accepted = automation.client.post("/api/v1/jobs", headers=operator, json=_job(**overrides))
    assert accepted.status_code == 202, accepted.text
    return str(accepted.json()["job_id"])


def _run(automation: Any, operator: dict[str, str], **overrides: Any) -> str:
    job_id = _start(automation, operator, **overrides)
    automation.wait()
    return job_id


def _status(automation: Any, job_id: str) -> str:
    with transaction(automation.sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        return job.status


def _wait_for(automation: Any, job_id: str, status: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while _status(automation, job_id) != status:
        assert time.monotonic() < deadline, f"job {job_id} is {_status(automation, job_id)}, not {status}"
        time.sleep(0.02)


def _page_login(automation: Any, username: str) -> None:
    """Log in through the login form (the client keeps the cookie)."""
    client = automation.client
    client.cookies.clear()
    response = client.post("/login", data={"username": username, "password": PASSWORD, "next": "/jobs"},
                           follow_redirects=False)
    assert response.status_code == 303, response.text


def _found(pattern: str | re.Pattern[str], text: str) -> str:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not found"
    return match.group(1)


def _rows(html: str, attribute: str) -> list[str]:
    return re.findall(rf'<tr {attribute}="([^"]+)"', html)


def _audit(sessions: sessionmaker[Session], entity_type: str) -> list[AuditEntry]:
    with transaction(sessions) as session:
        return list(session.scalars(select(AuditEntry).where(AuditEntry.entity_type == entity_type)
                                    .order_by(AuditEntry.id)))


# --- pages ---------------------------------------------------------------------------------------------------

def test_the_job_pages_show_the_job_its_events_and_checks_in_korean_and_english(
        automation: Any, operator: dict[str, str], make_user: Callable[..., str]) -> None:
    job_id = _run(automation, operator)
    other_id = _run(automation, operator, agency="MOEF", hosts=HOSTS[:1])
    make_user("ops-page", "operator")
    _page_login(automation, "ops-page")
    client = automation.client

    listing = client.get("/jobs")
    assert listing.status_code == 200
    assert 'href="/jobs"' in listing.text.split('class="main-nav"', 1)[1]
    assert 'href="/credentials"' in listing.text.split('class="main-nav"', 1)[1]
    assert "플레이북 작업" in listing.text and "대상 서버" in listing.text
    assert set(_rows(listing.text, "data-job")) == {job_id, other_id}
    row = listing.text.split(f'data-job="{job_id}"', 1)[1].split("</tr>", 1)[0]
    assert 'data-status="successful"' in row and "site.yml" in row and "MOIS" in row and "ops1" in row
    assert '<td data-col="hosts" class="num">2</td>' in row
    english = client.get("/jobs?lang=en")
    assert "Playbook jobs" in english.text and "Requested by" in english.text and "successful" in english.text
    assert _rows(client.get("/jobs?status=failed").text, "data-job") == []
    assert set(_rows(client.get("/jobs?status=successful").text, "data-job")) == {job_id, other_id}
    assert set(_rows(client.get("/jobs?status=").text, "data-job")) == {job_id, other_id}
    bad = client.get("/jobs?status=exploded")
    assert bad.status_code == 422 and "status" in bad.text and bad.headers["content-type"].startswith("text/html")

    page = client.get(f"/jobs/{job_id}?lang=ko")  # ?lang=en above chose English for the next pages
    assert page.status_code == 200
    assert 'id="job-status"' in page.text and 'data-status="successful"' in page.text and "성공" in page.text
    assert "실행 로그" in page.text and "검증 근거" in page.text and "서버별 결과" in page.text
    # Per-host totals, from the job's recap.
    web = page.text.split('<tr data-host="web-1">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num" data-col="ok">1</td>' in web and '<td class="num" data-col="changed">1</td>' in web
    assert '<td class="num" data-col="failed">0</td>' in web and "10.78.0.11" in web and "nginx" in web
    # Every event so far: play, task, a result per host, the verification note and the checks.
    kinds = re.findall(r'<tr data-seq="\d+" data-kind="([a-z]+)"', page.text)
    assert kinds == ["play", "task", "ok", "ok", "verify", "check", "check", "check", "check"]
    assert "Install packages" in page.text and "nginx: test_nginx_service_running" in page.text
    # The evidence: every check of every role on every host, and the counts.
    assert sorted(re.findall(r'<tr data-check="([a-z_]+)" data-host="([0-9.]+)" data-outcome="(\w+)"',
                             page.text)) == sorted([
        ("test_base_service_running", "10.78.0.11", "passed"), ("test_nginx_service_running", "10.78.0.11", "passed"),
        ("test_base_service_running", "10.78.0.12", "passed"),
        ("test_postgresql_service_running", "10.78.0.12", "passed")])
    assert '<dd class="big" data-outcome="passed">4</dd>' in page.text
    # Secret variables by name only; the job has ended, so no cancel button and no script.
    assert "postgresql_db_owner_password" in page.text and SECRET not in page.text
    assert 'id="cancel-form"' not in page.text and "<script" not in page.text and 'id="live-note"' not in page.text
    assert "script-src 'none'" in page.headers["content-security-policy"]

    english_page = client.get(f"/jobs/{job_id}?lang=en")
    assert english_page.status_code == 200
    for text in ("Event log", "Check evidence", "Per-host totals", "Verification", "successful", "passed",
                 "(values are never shown)"):
        assert text in english_page.text, text

    unknown = client.get("/jobs/no-such-job")
    assert unknown.status_code == 404 and "no-such-job" in unknown.text


def test_a_failed_job_shows_why_on_its_page(automation: Any, operator: dict[str, str],
                                           make_user: Callable[..., str]) -> None:
    automation.checks.failing = {("10.78.0.11", "nginx")}
    checked = _run(automation, operator)
    automation.checks.failing = set()
    automation.runner.fail_host = "db-1"
    broken = _run(automation, operator)
    make_user("aud-page", "auditor")
    _page_login(automation, "aud-page")

    page = automation.client.get(f"/jobs/{checked}?lang=en").text
    explanation = page.split('id="job-explanation"', 1)[1].split("</p>", 1)[0]
    assert "check test_nginx_service_running of role nginx failed on web-1" in explanation
    assert 'data-status="failed"' in page and "AssertionError: nginx is not running" in page
    assert '<dd class="big" data-outcome="failed">1</dd>' in page

    page = automation.client.get(f"/jobs/{broken}?lang=en").text
    assert "task &#39;Install packages&#39; on db-1 failed" in page
    db = page.split('<tr data-host="db-1">', 1)[1].split("</tr>", 1)[0]
    assert '<td class="num" data-col="failed">1</td>' in db
    assert "The checks did not run" in page and 'id="no-checks"' in page


def test_who_sees_which_jobs_pages(automation: Any, operator: dict[str, str], make_user: Callable[..., str]) -> None:
    mois_job = _run(automation, operator)
    moef_job = _run(automation, operator, agency="MOEF")
    client = automation.client

    make_user("moef-page", "ministry", "MOEF")
    _page_login(automation, "moef-page")
    assert _rows(client.get("/jobs").text, "data-job") == [moef_job]
    for path in (f"/jobs/{mois_job}", f"/jobs/{mois_job}/events/stream"):
        refused = client.get(path)
        assert refused.status_code == 404, path
        assert refused.headers["content-type"].startswith("text/html")
    assert client.get(f"/jobs/{moef_job}").status_code == 200
    assert client.get("/credentials").status_code == 403  # the control plane's credentials are not a ministry's
    assert 'href="/credentials"' not in client.get("/jobs").text

    make_user("sec-page", "secretariat")
    _page_login(automation, "sec-page")
    for path in ("/jobs", f"/jobs/{mois_job}", "/credentials", f"/jobs/{mois_job}/events/stream"):
        assert client.get(path).status_code == 403, path
    nav = client.get("/dashboard").text
    assert 'href="/jobs"' not in nav and 'href="/credentials"' not in nav

    client.cookies.clear()
    anonymous = client.get(f"/jobs/{mois_job}", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login?next=%2Fjobs%2F")


def test_the_cancel_form_cancels_a_pending_and_a_running_job(automation: Any, operator: dict[str, str],
                                                             make_user: Callable[..., str],
                                                             sessions: sessionmaker[Session]) -> None:
    """Two jobs held running by the gate fill the playbook queue's two slots, so a third one stays pending."""
    automation.runner.gate = threading.Event()
    running = [_start(automation, operator), _start(automation, operator)]
    for job_id in running:
        _wait_for(automation, job_id, "running")
    pending = _start(automation, operator)
    assert _status(automation, pending) == "pending"
    client = automation.client

    make_user("aud-page", "auditor")
    _page_login(automation, "aud-page")
    seen = client.get(f"/jobs/{pending}")
    assert seen.status_code == 200 and 'id="cancel-form"' not in seen.text and 'data-status="pending"' in seen.text
    refused = client.post(f"/jobs/{pending}/cancel", data={"csrf": _found(CSRF_RE, seen.text)},
                          follow_redirects=False)
    assert refused.status_code == 403 and _status(automation, pending) == "pending"

    make_user("ops-page", "operator")
    _page_login(automation, "ops-page")
    page = client.get(f"/jobs/{pending}")
    assert 'id="cancel-form"' in page.text and f'action="/jobs/{pending}/cancel"' in page.text
    forged = client.post(f"/jobs/{pending}/cancel", data={"csrf": "0" * 64}, follow_redirects=False)
    assert forged.status_code == 403 and _status(automation, pending) == "pending"
    token = _found(CSRF_RE, page.text)
    canceled = client.post(f"/jobs/{pending}/cancel", data={"csrf": token}, follow_redirects=False)
    assert canceled.status_code == 303 and canceled.headers["location"] == f"/jobs/{pending}?canceled=1"
    assert _status(automation, pending) == "canceled"
    after = client.get(canceled.headers["location"])
    assert 'id="cancel-requested"' in after.text and 'data-status="canceled"' in after.text
    assert "canceled on request before it started" in after.text and 'id="cancel-form"' not in after.text
    assert 'hreflang="en"' in after.text and "canceled=1&amp;lang" not in after.text

    # A running job stops within moments (its runner is in this process).
    stopped = client.post(f"/jobs/{running[0]}/cancel", data={"csrf": token}, follow_redirects=False)
    assert stopped.status_code == 303
    _wait_for(automation, running[0], "canceled")
    assert client.post(f"/jobs/{running[0]}/cancel", data={"csrf": token}).status_code == 409

    automation.runner.gate.set()
    automation.wait()
    assert [_status(automation, j) for j in (*running, pending)] == ["canceled", "successful", "canceled"]
    cancels = [(e.entity_id, e.actor) for e in _audit(sessions, "job") if e.action == "cancel"]
    assert cancels == [(pending, "ops-page"), (running[0], "ops-page")]


def test_a_running_jobs_page_follows_its_events_through_the_page_stream(automation: Any, operator: dict[str, str],
                                                                        make_user: Callable[..., str]) -> None:
    automation.runner.gate = threading.Event()
    job_id = _start(automation, operator)
    _wait_for(automation, job_id, "running")
    make_user("ops-page", "operator")
    _page_login(automation, "ops-page")
    client = automation.client

    page = client.get(f"/jobs/{job_id}")
    assert page.status_code == 200 and 'data-status="running"' in page.text
    # Readable without the script: what happened so far, and a note to reload.
    assert re.findall(r'<tr data-seq="\d+" data-kind="([a-z]+)"', page.text) == ["play", "task"]
    assert 'id="live-note"' in page.text and "새로 고치세요" in page.text
    assert 'data-after="2"' in page.text and f'data-stream="/jobs/{job_id}/events/stream"' in page.text
    # The inline script runs under this response's nonce only.
    nonce = _found(NONCE_RE, page.text)
    policy = page.headers["content-security-policy"]
    assert f"script-src 'nonce-{nonce}'" in policy and "'unsafe-inline'" not in policy
    assert "EventSource" in page.text and "job-event" in page.text
    labels = json.loads(_found(r"data-labels='([^']+)'", page.text))
    assert labels["status"]["successful"] == "성공" and labels["kind"]["check"] == "검사"
    assert nonce != _found(NONCE_RE, client.get(f"/jobs/{job_id}").text)

    # The stream goes on while the job runs and ends with it.
    threading.Timer(0.5, automation.runner.gate.set).start()
    with client.stream("GET", f"/jobs/{job_id}/events/stream?after=2") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = "".join(response.iter_text())
    messages = [block for block in body.split("\n\n") if block.strip()]
    events = [dict(line.split(": ", 1) for line in m.splitlines()) for m in messages[1:-1]]
    assert {e["event"] for e in events} == {"job-event"}
    assert [json.loads(e["data"])["seq"] for e in events] == [int(e["id"]) for e in events] == list(range(3, 10))
    assert [json.loads(e["data"])["kind"] for e in events][:3] == ["ok", "ok", "verify"]
    assert messages[-1] == 'event: end\ndata: {"status": "successful", "explanation": ""}'
    assert SECRET not in body
    automation.wait()

    # Reconnecting with Last-Event-ID gets only what came after; an ended job's page has no script.
    with client.stream("GET", f"/jobs/{job_id}/events/stream", headers={"Last-Event-ID": "8"}) as response:
        ids = [line for line in "".join(response.iter_text()).splitlines() if line.startswith("id: ")]
    assert ids == ["id: 9"]
    whole = client.get(f"/jobs/{job_id}/events/stream").text
    assert whole.count("event: job-event") == 9 and whole.rstrip().endswith('"explanation": ""}')
    assert "<script" not in client.get(f"/jobs/{job_id}").text

    client.cookies.clear()
    anonymous = client.get(f"/jobs/{job_id}/events/stream", follow_redirects=False)
    assert anonymous.status_code == 303 and anonymous.headers["location"].startswith("/login")


def test_the_credentials_page_never_shows_a_private_key(automation: Any, operator: dict[str, str],
                                                        make_user: Callable[..., str], ssh_private_key: str) -> None:
    automation.client.put("/api/v1/credentials/deploy", headers=operator, json={
        "private_key": ssh_private_key, "username": "deploy", "description": "deploy <user>",
        "known_hosts": "10.78.0.11 ssh-ed25519 AAAAC3Nza\n10.78.0.12 ssh-ed25519 AAAAC3Nzb\n"})
    listed = {c["name"]: c for c in automation.client.get("/api/v1/credentials", headers=operator).json()}
    make_user("aud-page", "auditor")
    _page_login(automation, "aud-page")

    page = automation.client.get("/credentials")
    assert page.status_code == 200 and "SSH 자격 증명" in page.text
    assert _rows(page.text, "data-credential") == ["deploy", "hosts-root"]
    deploy = page.text.split('data-credential="deploy"', 1)[1].split("</tr>", 1)[0]
    assert listed["deploy"]["fingerprint"] in deploy and ">deploy<" in deploy and ">2<" in deploy
    assert "deploy &lt;user&gt;" in deploy
    root = page.text.split('data-credential="hosts-root"', 1)[1].split("</tr>", 1)[0]
    assert "처음 접속할 때 신뢰" in root and "dev hosts" in root
    for line in ssh_private_key.splitlines()[1:-1]:
        assert line not in page.text
    assert "PRIVATE KEY" not in page.text and listed["deploy"]["public_key"].split()[1] not in page.text
    english = automation.client.get("/credentials?lang=en").text
    assert "SSH credentials" in english and "Key fingerprint" in english and "trusted on first contact" in english


def test_every_string_of_the_jobs_pages_is_in_korean_and_english() -> None:
    from controlplane.automation.domain import JobStatus
    from controlplane.automation.pages import CHECK_OUTCOMES, EVENT_KINDS, HOST_COUNTS
    from controlplane.web.i18n import STRINGS

    templates = Path(__file__).resolve().parents[2] / "controlplane" / "web" / "templates"
    keys = {key for name in ("jobs.html", "jobs_detail.html", "jobs_macros.html", "credentials.html")
            for key in re.findall(r"t\('([a-z_.0-9]+)'\s*[,)]", (templates / name).read_text(encoding="utf-8"))}
    keys |= {f"jstatus.{s.value}" for s in JobStatus} | {f"jkind.{k}" for k in EVENT_KINDS}
    keys |= {f"outcome.{o}" for o in CHECK_OUTCOMES} | {f"col.{c}" for c in HOST_COUNTS}
    keys |= {"nav.jobs", "nav.credentials"}
    missing = sorted(k for k in keys if set(STRINGS.get(k, {})) != {"ko", "en"})
    assert missing == []


# --- the command line ---------------------------------------------------------------------------------------

@pytest.fixture
def cli(settings: Any, monkeypatch: pytest.MonkeyPatch, automation: Any, catalogue: Any) -> Callable[..., str]:
    """`controlplane ...` on the test database, its jobs run by the same fakes as the server's."""
    monkeypatch.setenv("CP_ENV", "test")
    monkeypatch.setenv("CP_DATABASE_URL", settings.effective_database_url)
    monkeypatch.setenv("CP_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.setattr("controlplane.automation.cli.WATCH_POLL_SECONDS", 0.05)
    from controlplane.cli import app
    from controlplane.composition import build_context, close_context

    @contextmanager
    def opened(settings: Any, *, clock: Any = None) -> Iterator[Any]:  # the commands' context, on the fakes
        ctx = build_context(settings, clock=clock, playbook_runner=automation.runner, check_runner=automation.checks)
        try:
            yield ctx
        finally:
            close_context(ctx)

    monkeypatch.setattr("controlplane.clikit.opened_context", opened)

    def run(*args: str, code: int = 0) -> str:
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert result.exit_code == code, result.output
        # One line of words: the console may wrap long lines, and table borders go.
        return " ".join(re.sub(r"[│┃]", " ", result.output).split())

    return run


@pytest.fixture
def files(tmp_path: Path, ssh_private_key: str) -> Callable[..., Path]:
    def write(name: str, content: Any) -> Path:
        path = tmp_path / name
        path.write_text(content if isinstance(content, str) else yaml.safe_dump(content), encoding="utf-8")
        return path

    write("id_ed25519", ssh_private_key)
    write("hosts.yaml", HOSTS)
    return write


def test_cli_credentials_put_list_delete(cli: Callable[..., str], files: Callable[..., Path], tmp_path: Path,
                                         ssh_private_key: str, automation: Any, operator: dict[str, str],
                                         sessions: sessionmaker[Session]) -> None:
    key = tmp_path / "id_ed25519"
    created = cli("credentials", "put", "cli-key", "--private-key-file", key, "--description", "from the cli")
    fingerprint = {c["name"]: c for c in automation.client.get("/api/v1/credentials", headers=operator).json()}[
        "cli-key"]["fingerprint"]
    assert f"created credential 'cli-key' (user root): {fingerprint}" in created
    assert "trusts a host's key on first contact" in created
    known = files("known_hosts", "10.78.0.11 ssh-ed25519 AAAAC3Nza\n# comment\n")
    updated = cli("credentials", "put", "cli-key", "--private-key-file", key, "--username", "deploy",
                  "--known-hosts-file", known)
    assert "updated credential 'cli-key' (user deploy)" in updated and "1 known host key(s)" in updated
    listing = cli("credentials", "list")
    assert "cli-key deploy" in listing and fingerprint in listing and "hosts-root root" in listing
    for output in (created, updated, listing):
        assert all(line not in output for line in ssh_private_key.splitlines()[1:-1])
    assert [(e.action, e.actor.startswith("cli:"), e.after and e.after["secret"]) for e in
            _audit(sessions, "credential") if e.entity_id == "cli-key"] == [("create", True, "***"),
                                                                           ("update", True, "***")]

    assert "private_key: not an OpenSSH or PEM private key" in cli(
        "credentials", "put", "bad", "--private-key-file", files("junk", "not a key"), code=2)
    assert "--private-key-file: cannot read" in cli(
        "credentials", "put", "bad", "--private-key-file", tmp_path / "missing", code=2)
    assert "username: String should match pattern" in cli(
        "credentials", "put", "bad", "--private-key-file", key, "--username", "Root!", code=2)
    assert "name: 1-64 lower-case letters" in cli("credentials", "put", "Bad Name", "--private-key-file", key,
                                                  code=2)
    assert "known_hosts: line 1 is not 'host key-type key'" in cli(
        "credentials", "put", "bad", "--private-key-file", key, "--known-hosts-file", files("kh", "oops\n"), code=2)

    assert "deleted credential 'cli-key'" in cli("credentials", "delete", "cli-key")
    assert "credential: unknown credential 'cli-key'" in cli("credentials", "delete", "cli-key", code=2)
    _run(automation, operator)
    assert "used by 1 job(s)" in cli("credentials", "delete", "hosts-root", code=2)
    assert "cli-key" not in cli("credentials", "list")


def test_cli_jobs_run_in_the_foreground_with_progress_and_exit_codes(
        cli: Callable[..., str], files: Callable[..., Path], tmp_path: Path, automation: Any,
        operator: dict[str, str], sessions: sessionmaker[Session]) -> None:
    hosts = tmp_path / "hosts.yaml"
    secrets = files("secrets.yaml", {"postgresql_db_owner_password": SECRET})
    extra = files("extra.yaml", {"nginx_listen_port": 8081})
    output = cli("jobs", "run", "site.yml", "--credential", "hosts-root", "--hosts-file", hosts, "--agency", "MOIS",
                 "--extra-vars", f"@{extra}", "--secret-vars-file", secrets, "--timeout", "600")
    job_id = _found(r"job ([0-9a-f-]{36}): site.yml on 2 host\(s\)", output)
    for text in ("PLAY [site]", "TASK [Install packages]", "changed: [web-1]", "changed: [db-1]",
                 "VERIFY [testinfra checks of base, postgresql, nginx on 2 host(s)]",
                 "check passed: [web-1] nginx: test_nginx_service_running", "checks: 4 passed, 0 failed, 0 skipped",
                 f"job {job_id} successful"):
        assert text in output, text
    assert SECRET not in output
    ran = automation.runner.jobs[-1]
    assert (ran.extravars, dict(ran.secrets), ran.timeout_seconds) == ({"nginx_listen_port": 8081},
                                                                       {"postgresql_db_owner_password": SECRET}, 600)
    with transaction(sessions) as session:
        job = session.get(Job, job_id)
        assert job is not None
        assert (job.status, job.requested_by.startswith("cli:"), job.agency.code if job.agency else None,
                job.secret_names, job.secrets_sealed) == ("successful", True, "MOIS",
                                                          ["postgresql_db_owner_password"], None)
    assert [e.action for e in _audit(sessions, "job") if e.entity_id == job_id] == ["run", "finished"]

    # A failed task: exit 1 with the explanation; no checks run.
    automation.runner.fail_host = "db-1"
    checks_before = len(automation.checks.requests)
    failed = cli("jobs", "run", "site.yml", "--credential", "hosts-root", "--hosts-file", hosts,
                 "--extra-vars", '{"nginx_listen_port": 8082}', code=1)
    assert "failed: [db-1] No package matching 'tomcat11' is available" in failed
    assert re.search(r"job [0-9a-f-]{36} failed: task 'Install packages' on db-1 failed", failed)
    assert len(automation.checks.requests) == checks_before
    assert automation.runner.jobs[-1].extravars == {"nginx_listen_port": 8082}

    # A failed check fails the job; --no-verify runs none.
    automation.runner.fail_host = None
    automation.checks.failing = {("10.78.0.12", "postgresql")}
    checked = cli("jobs", "run", "site.yml", "--credential", "hosts-root", "--hosts-file", hosts, code=1)
    assert "check failed: [db-1] postgresql: test_postgresql_service_running AssertionError" in checked
    assert "check test_postgresql_service_running of role postgresql failed on db-1" in checked
    unverified = cli("jobs", "run", "verify.yml", "--credential", "hosts-root", "--hosts-file", hosts,
                     "--no-verify", "--limit", "web-1")
    assert "successful" in unverified and "VERIFY" not in unverified
    assert automation.runner.jobs[-1].limit == "web-1" and len(automation.checks.requests) == checks_before + 1


@pytest.mark.parametrize("engine_on", [False])  # refused before any work is handed over
@pytest.mark.parametrize(("args", "hosts", "message"), [
    ([], "nope", "--hosts-file: cannot read"),
    ([], "- name: web-1\n  address: [unclosed\n", "--hosts-file: "),
    ([], {"web-1": "10.0.0.1"}, "must be a non-empty list of hosts"),
    ([], [HOSTS[0], {"name": "db-1"}], "hosts.1.address: Field required (--hosts-file "),
    ([], [HOSTS[0], {"name": "db-1", "address": "10.0.0.2", "port": 22}], "hosts.1.port: Extra inputs are not "
                                                                        "permitted"),
    ([], [{"name": "web 1", "address": "10.0.0.1"}], "hosts.0.name: 1-63 letters"),
    ([], [HOSTS[0], HOSTS[0]], "hosts.1.name: host 'web-1' is listed twice (--hosts-file "),
    ([], [{"name": "web-1", "address": "10.0.0.1", "groups": ["apache"]}], "hosts.0.groups: unknown group 'apache'"),
    ([], [{"name": "web-1", "address": "10.0.0.1", "vars": {"ansible_ssh_common_args": "-o ProxyCommand=x"}}],
     "hosts.0.vars.ansible_ssh_common_args: connection, check and cp_ settings are set by the control plane"),
    (["--extra-vars", "{oops"], None, "--extra-vars: not valid JSON"),
    (["--extra-vars", "[1, 2]"], None, "--extra-vars: expected a mapping"),
    (["--extra-vars", '{"db_password": "x"}'], None, "extravars.db_password: looks like a secret"),
    (["--timeout", "5"], None, "timeout_seconds: Input should be greater than or equal to 10 (--timeout)"),
    (["--agency", "NOPE"], None, "agency: unknown agency 'NOPE' (--agency)"),
    (["--credential", "nobody"], None, "credential: unknown credential 'nobody' (--credential)"),
    (["--credential", "Bad Name"], None, "credential: String should match pattern"),
])
def test_cli_jobs_run_refuses_bad_input_naming_the_field(cli: Callable[..., str], files: Callable[..., Path],
                                                         tmp_path: Path, automation: Any, operator: dict[str, str],
                                                         args: list[str], hosts: Any, message: str) -> None:
    hosts_file = tmp_path / "hosts.yaml" if hosts is None else tmp_path / "absent.yaml" if hosts == "nope" \
        else files("bad-hosts.yaml", hosts)
    if "--credential" not in args:
        args = [*args, "--credential", "hosts-root"]
    output = cli("jobs", "run", "site.yml", "--hosts-file", hosts_file, *args, code=2)
    assert message in output
    assert automation.runner.jobs == []
    with transaction(automation.sessions) as session:
        assert session.scalars(select(Job)).all() == []


def test_cli_jobs_run_refuses_an_unknown_playbook_and_bad_secret_files(
        cli: Callable[..., str], files: Callable[..., Path], tmp_path: Path, operator: dict[str, str]) -> None:
    hosts = tmp_path / "hosts.yaml"
    assert "playbook: unknown playbook 'rm-rf.yml'" in cli("jobs", "run", "rm-rf.yml", "--credential", "hosts-root",
                                                           "--hosts-file", hosts, code=2)
    broken = files("secrets.yaml", f"postgresql_db_owner_password: {SECRET}\n  bad: [\n")
    output = cli("jobs", "run", "site.yml", "--credential", "hosts-root", "--hosts-file", hosts,
                 "--secret-vars-file", broken, code=2)
    assert "--secret-vars-file:" in output and "is not valid YAML (line" in output and SECRET not in output
    listed = files("list.yaml", ["a", "b"])
    assert "--secret-vars-file: expected a mapping" in cli(
        "jobs", "run", "site.yml", "--credential", "hosts-root", "--hosts-file", hosts, "--secret-vars-file", listed,
        code=2)
    nested = files("nested.yaml", {"postgresql_db_owner_password": {"value": SECRET}})
    output = cli("jobs", "run", "site.yml", "--credential", "hosts-root", "--hosts-file", hosts,
                 "--secret-vars-file", nested, code=2)
    assert "secrets.postgresql_db_owner_password: Input should be a valid string" in output and SECRET not in output


def test_cli_jobs_list_and_show(cli: Callable[..., str], automation: Any, operator: dict[str, str]) -> None:
    good = _run(automation, operator)
    automation.runner.fail_host = "web-1"
    bad = _run(automation, operator, agency="MOEF")

    listing = cli("jobs", "list")
    assert re.search(rf"{good} successful site.yml MOIS 2 ops1", listing)
    assert re.search(rf"{bad} failed site.yml MOEF 2 ops1", listing)
    assert bad not in cli("jobs", "list", "--status", "successful")
    assert good not in cli("jobs", "list", "--agency", "MOEF") and bad in cli("jobs", "list", "--agency", "MOEF")
    assert "agency: unknown agency 'NOPE'" in cli("jobs", "list", "--agency", "NOPE", code=2)
    assert "Invalid value for '--status'" in cli("jobs", "list", "--status", "exploded", code=2)

    shown = cli("jobs", "show", good)
    for text in (f"job {good}: successful", "playbook: site.yml", "credential: hosts-root", "agency: MOIS",
                 "requested by: ops1", "KST", "rc: 0", "extra vars: {\"nginx_listen_port\": 8081}",
                 "secret vars: postgresql_db_owner_password (values never shown)",
                 "web-1 10.78.0.11 nginx 1 1 0 0 0", "db-1 10.78.0.12 postgresql 1 1 0 0 0",
                 "verification: 4 passed, 0 failed, 0 skipped", "10.78.0.11 nginx test_nginx_service_running passed"):
        assert text in shown, text
    assert SECRET not in shown
    failed = cli("jobs", "show", bad)
    assert "task 'Install packages' on web-1 failed" in failed and "web-1 10.78.0.11 nginx 0 0 1 0 0" in failed
    assert "verification: did not run" in failed
    assert "job_id: unknown job 'nope'" in cli("jobs", "show", "nope", code=2)


def test_cli_watches_a_job_the_server_runs_until_it_ends(cli: Callable[..., str], automation: Any,
                                                         operator: dict[str, str]) -> None:
    automation.runner.gate = threading.Event()
    job_id = _start(automation, operator)
    _wait_for(automation, job_id, "running")
    threading.Timer(0.5, automation.runner.gate.set).start()
    watched = cli("jobs", "watch", job_id)
    for text in ("PLAY [site]", "TASK [Install packages]", "changed: [web-1]", "changed: [db-1]",
                 "check passed: [db-1] postgresql: test_postgresql_service_running", "Recap",
                 "web-1 10.78.0.11 nginx 1 1 0 0 0", f"job {job_id} successful"):
        assert text in watched, text
    automation.wait()
    assert "job_id: unknown job 'nope'" in cli("jobs", "watch", "nope", code=2)

    automation.runner.fail_host = "web-1"
    failed = _run(automation, operator)
    assert "failed: [web-1] No package matching" in cli("jobs", "watch", failed, code=1)


def test_cli_watch_draws_a_live_view_on_a_terminal(cli: Callable[..., str], automation: Any,
                                                   operator: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    job_id = _run(automation, operator)
    screen = io.StringIO()
    monkeypatch.setattr("controlplane.automation.cli.console",
                        Console(file=screen, force_terminal=True, width=160, color_system=None))
    cli("jobs", "watch", job_id)
    drawn = screen.getvalue()
    assert f"job {job_id}" in drawn and "play: site" in drawn and "successful" in drawn
    web = [line for line in drawn.splitlines() if "web-1" in line and "10.78.0.11" in line][-1]  # the last drawing
    assert re.search(r"web-1\s+│\s+10\.78\.0\.11\s+│\s+nginx\s+│\s+1\s+│\s+1\s+│\s+0", web)
    assert "test_postgresql_service_running" in drawn and "checks: 4 passed" in drawn


def test_cli_cancels_a_job_the_server_runs(cli: Callable[..., str], automation: Any,
                                           operator: dict[str, str], sessions: sessionmaker[Session]) -> None:
    automation.runner.gate = threading.Event()
    job_id = _start(automation, operator)
    _wait_for(automation, job_id, "running")
    requested = cli("jobs", "cancel", job_id)
    assert f"job {job_id}: cancel requested" in requested
    # Only the row tells the server's job; its runner notices within about a second.
    watched = cli("jobs", "watch", job_id, code=1)
    assert f"job {job_id} canceled: canceled on request" in watched
    automation.wait()
    assert _status(automation, job_id) == "canceled"
    assert "has ended already (canceled)" in cli("jobs", "cancel", job_id, code=2)
    assert "job_id: unknown job 'nope'" in cli("jobs", "cancel", "nope", code=2)
    entry = next(e for e in _audit(sessions, "job") if e.action == "cancel")
    assert entry.actor.startswith("cli:") and (entry.before, entry.after) == ({"cancel_requested": False},
                                                                              {"cancel_requested": True})

    # A pending one (the server's two workers held busy) is canceled at once.
    automation.runner.gate = threading.Event()
    busy = [_start(automation, operator), _start(automation, operator)]
    for running in busy:
        _wait_for(automation, running, "running")
    pending = _start(automation, operator)
    assert f"job {pending} canceled: canceled on request before it started" in cli("jobs", "cancel", pending)
    automation.runner.gate.set()
    automation.wait()
    assert _status(automation, pending) == "canceled"


def test_a_job_the_cli_runs_can_be_canceled_from_the_server(cli: Callable[..., str], automation: Any,
                                                            operator: dict[str, str], tmp_path: Path,
                                                            files: Callable[..., Path]) -> None:
    automation.runner.gate = threading.Event()
    automation.runner.started.clear()

    def cancel_from_the_api() -> None:
        assert automation.runner.started.wait(10)
        with transaction(automation.sessions) as session:
            job_id = session.scalars(select(Job.id).where(Job.status == "running")).one()
        response = automation.client.post(f"/api/v1/jobs/{job_id}/cancel", headers=operator)
        assert response.status_code == 202, response.text

    canceler = threading.Thread(target=cancel_from_the_api)
    canceler.start()
    output = cli("jobs", "run", "site.yml", "--credential", "hosts-root", "--hosts-file", tmp_path / "hosts.yaml",
                 code=1)
    canceler.join(10)
    assert re.search(r"job [0-9a-f-]{36} canceled: canceled on request", output)
