"""Session imports (CSV, XLSX; all or nothing, row-numbered), report exports and the public open data."""

from __future__ import annotations

import csv
import io
from datetime import date, datetime

import pytest
from openpyxl import Workbook, load_workbook

API = "/api/v1/compliance"
IMPORT = f"{API}/sessions/import"
OPEN_DATA = "/api/v1/open-data/remote-meetings"
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
HEADER = ["meeting_code", "held_on", "mode", "status", "note"]
PERSONAL_KEYS = ("username", "email", "user", "note", "full_name", "password")


@pytest.fixture
def admin(client, catalogue, login):
    return login("admin1", "admin")


def _csv(rows: list[list[object]], header: list[str] = HEADER, bom: bool = False) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return (("\ufeff" if bom else "") + out.getvalue()).encode("utf-8")


def _xlsx(rows: list[list[object]], header: list[str] = HEADER) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(header)
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def _upload(client, headers, name: str, content: bytes, media_type: str = "text/csv"):
    return client.post(IMPORT, headers=headers, files={"file": (name, content, media_type)})


def _count(client, headers) -> int:
    return len(client.get(f"{API}/sessions", headers=headers, params={"limit": 1000}).json())


def _shares(client, headers, period="2014", **params) -> dict:
    response = client.get(f"{API}/shares", headers=headers, params={"period": period, **params})
    assert response.status_code == 200, response.text
    return response.json()


def _by_key(report: dict) -> dict[str, dict]:
    return {r["key"]: r for r in report["rows"]}


def _record(client, headers, meeting, day, mode, status="held", note=""):
    response = client.post(f"{API}/sessions", headers=headers,
                           json={"meeting": meeting, "held_on": day, "mode": mode, "status": status, "note": note})
    assert response.status_code == 201, response.text
    return response.json()


# --- imports ------------------------------------------------------------------------------------

def test_csv_import_records_sessions_and_moves_the_shares(client, admin):
    assert _shares(client, admin)["government"]["status"] == "no_data"
    content = _csv([
        ["MOIS-LOCAL", "2014-01-10", "video", "held", "서울청사 영상회의실"],
        ["MOIS-LOCAL", "2014-02-10", "in_person", "", ""],
        ["MOIS-SAFETY", "2014-03-10", "Hybrid", "held", ""],
        ["MOEF-ECON", "2014-09-10", "video", "scheduled", ""],
    ], bom=True)
    response = _upload(client, admin, "sessions-2014.csv", content)
    assert response.status_code == 200, response.text
    assert response.json() == {"imported": 4}
    assert _count(client, admin) == 4

    rows = _by_key(_shares(client, admin))
    # MOIS: video, in person, hybrid (counts in 2014): 2 of 3; required ceil(1.5) = 2.
    assert (rows["MOIS"]["held"], rows["MOIS"]["video"], rows["MOIS"]["share"], rows["MOIS"]["status"]) == \
        (3, 2, 0.6667, "on_track")
    assert (rows["MOEF"]["held"], rows["MOEF"]["scheduled"], rows["MOEF"]["status"]) == (0, 1, "at_risk")
    sessions = client.get(f"{API}/sessions", headers=admin, params={"meeting": "MOIS-SAFETY"}).json()
    assert [(s["held_on"], s["mode"], s["status"], s["evidence"]) for s in sessions] == \
        [("2014-03-10", "hybrid", "held", "manual")]


def test_xlsx_import_with_date_cells(client, admin):
    content = _xlsx([
        ["MOEF-ECON", datetime(2014, 2, 3), "video", "held", None],
        ["MOEF-ECON", date(2014, 3, 3), "video", None, None],
        ["MOEF-ECON", "2014-04-03", "in_person", "held", "text date"],
        [None, None, None, None, None],
        ["MSIT-ICT", datetime(2014, 4, 4), "in_person", "held", None],
    ])
    response = _upload(client, admin, "sessions.xlsx", content, XLSX_TYPE)
    assert response.status_code == 200, response.text
    assert response.json()["imported"] == 4
    rows = _by_key(_shares(client, admin))
    assert (rows["MOEF"]["held"], rows["MOEF"]["video"], rows["MOEF"]["share"]) == (3, 2, 0.6667)
    assert (rows["MSIT"]["held"], rows["MSIT"]["video"], rows["MSIT"]["status"]) == (1, 0, "below")


def test_header_aliases_are_accepted(client, admin):
    content = _csv([["MOIS-LOCAL", "2014-01-10", "video"]], header=["Meeting", "Date", "Mode"])
    assert _upload(client, admin, "other-register.csv", content).json() == {"imported": 1}


GOOD_ROWS = [
    ["MOIS-LOCAL", "2014-01-10", "video", "held", ""],
    ["MOIS-SAFETY", "2014-01-11", "in_person", "held", ""],
    ["MOEF-ECON", "2014-01-12", "hybrid", "held", ""],
]


BAD_ROWS = {
    "unknown-meeting": (["NOPE-MEETING", "2014-01-13", "video", "held", ""], "meeting_code", "unknown meeting"),
    "impossible-date": (["MOIS-LOCAL", "2014-02-30", "video", "held", ""], "held_on", "bad date"),
    "bad-date-format": (["MOIS-LOCAL", "13/01/2014", "video", "held", ""], "held_on", "bad date"),
    "bad-mode": (["MOIS-LOCAL", "2014-01-13", "teleport", "held", ""], "mode", "bad mode"),
    "bad-status": (["MOIS-LOCAL", "2014-01-13", "video", "maybe", ""], "status", "bad status"),
    "duplicate-in-file": (["MOIS-LOCAL", "2014-01-10", "in_person", "held", ""], "held_on", "duplicate"),  # = row 2
    "duplicate-existing": (["MOIS-LOCAL", "2014-05-05", "video", "held", ""], "held_on", "duplicate"),
    "held-in-future": (["MOIS-LOCAL", "2014-07-02", "video", "held", ""], "held_on", "future"),
    "outside-designation": (["MSIT-ICT", "2014-02-01", "video", "held", ""], "held_on", "designated"),
}


@pytest.mark.parametrize("fmt,case", [("csv", case) for case in BAD_ROWS] + [
    ("xlsx", "unknown-meeting"), ("xlsx", "bad-date-format"), ("xlsx", "bad-mode"), ("xlsx", "duplicate-in-file"),
    ("xlsx", "duplicate-existing"),
])
def test_one_bad_row_refuses_the_whole_file(client, admin, fmt, case):
    bad_row, field, reason = BAD_ROWS[case]
    _record(client, admin, "MOIS-LOCAL", "2014-05-05", "video")
    before_count, before_shares = _count(client, admin), _shares(client, admin)
    rows = [GOOD_ROWS[0], GOOD_ROWS[1], bad_row, GOOD_ROWS[2]]  # the bad row is spreadsheet row 4
    if fmt == "csv":
        response = _upload(client, admin, "batch.csv", _csv(rows))
    else:
        response = _upload(client, admin, "batch.xlsx", _xlsx(rows), XLSX_TYPE)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "import_failed"
    assert body["field"] == "file"
    assert len(body["details"]) == 1
    detail = body["details"][0]
    assert (detail["row"], detail["field"]) == (4, field)
    assert reason in detail["reason"]
    assert "row 4" in body["message"]
    assert _count(client, admin) == before_count
    assert _shares(client, admin) == before_shares


def test_every_bad_row_is_listed_with_its_spreadsheet_row_number(client, admin):
    _record(client, admin, "MOEF-ECON", "2014-06-02", "video")
    content = _csv([
        ["MOIS-LOCAL", "2014-01-10", "video", "held", ""],        # row 2: good
        ["NOPE-MEETING", "2014-01-10", "video", "held", ""],      # row 3: unknown meeting
        [],                                                       # row 4: blank, skipped but counted
        ["MOIS-LOCAL", "yesterday", "video", "held", ""],         # row 5: bad date
        ["MOIS-SAFETY", "2014-01-10", "zoom", "held", ""],        # row 6: bad mode
        ["MOIS-LOCAL", "2014-01-10", "video", "held", ""],        # row 7: duplicate of row 2
        ["MOEF-ECON", "2014-06-02", "in_person", "held", ""],     # row 8: duplicate of an existing session
        ["MOIS-SAFETY", "2014-02-10", "video", "held", ""],       # row 9: good
    ])
    response = _upload(client, admin, "batch.csv", content)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "import_failed"
    assert [(d["row"], d["field"]) for d in body["details"]] == [
        (3, "meeting_code"), (5, "held_on"), (6, "mode"), (7, "held_on"), (8, "held_on")]
    reasons = {d["row"]: d["reason"] for d in body["details"]}
    assert "NOPE-MEETING" in reasons[3]
    assert "yesterday" in reasons[5]
    assert "zoom" in reasons[6]
    assert "row 2" in reasons[7]
    assert "already" in reasons[8]
    assert "5 bad row" in body["message"]
    assert _count(client, admin) == 1


@pytest.mark.parametrize("name,content,needle", [
    ("empty.csv", b"", "empty"),
    ("header-only.csv", b"meeting_code,held_on,mode\n", "no data rows"),
    ("columns.csv", b"meeting_code,mode\nMOIS-LOCAL,video\n", "held_on"),
    ("sessions.txt", b"meeting_code,held_on,mode\nMOIS-LOCAL,2014-01-10,video\n", ".csv or .xlsx"),
    ("broken.xlsx", b"this is not a zip file", "XLSX"),
    ("latin1.csv", "meeting_code,held_on,mode,note\nMOIS-LOCAL,2014-01-10,video,caf\xe9\n".encode("latin-1"),
     "UTF-8"),
])
def test_unreadable_files_are_refused_on_the_file_field(client, admin, name, content, needle):
    response = _upload(client, admin, name, content)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["field"] == "file"
    assert needle in body["message"]
    assert _count(client, admin) == 0


def test_xlsx_with_missing_columns_is_refused(client, admin):
    response = _upload(client, admin, "s.xlsx", _xlsx([["MOIS-LOCAL", "video"]], header=["meeting_code", "mode"]),
                       XLSX_TYPE)
    assert response.status_code == 422 and response.json()["field"] == "file"
    assert "held_on" in response.json()["message"]


def test_import_requires_a_file(client, admin):
    response = client.post(IMPORT, headers=admin)
    assert response.status_code == 422
    assert response.json()["field"] == "file"


def test_import_leaves_one_audit_row(client, admin):
    content = _csv([GOOD_ROWS[0], GOOD_ROWS[1]])
    assert _upload(client, admin, "two.csv", content).status_code == 200
    entries = client.get("/api/v1/audit", headers=admin, params={"actor": "admin1"}).json()
    imports = [e for e in entries if e["action"] == "import"]
    assert len(imports) == 1
    assert imports[0]["entity_type"] == "session"
    assert imports[0]["after"] == {"source": "two.csv", "imported": 2}


# --- report exports -----------------------------------------------------------------------------

@pytest.fixture
def recorded(client, admin):
    for meeting, day, mode, status in [
        ("MOIS-LOCAL", "2014-01-15", "video", "held"),
        ("MOIS-LOCAL", "2014-02-15", "in_person", "held"),
        ("MOIS-SAFETY", "2014-03-10", "hybrid", "held"),
        ("MOIS-SAFETY", "2014-09-10", "video", "scheduled"),
        ("MOEF-ECON", "2014-02-20", "in_person", "held"),
        ("MOEF-ECON", "2014-03-20", "in_person", "held"),
        ("MSIT-ICT", "2014-04-05", "video", "held"),
    ]:
        _record(client, admin, meeting, day, mode, status, note="김철수 과장 참석, 010-1234-5678")
    return admin


def _as_number(value):
    if value in ("", None):
        return None
    if isinstance(value, int | float):
        return value
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def _expected_rows(report: dict) -> dict[str, dict]:
    rows = {"ALL": report["government"]}
    if report.get("ministry"):
        rows[report["ministry"]["key"]] = report["ministry"]
    rows.update(_by_key(report))
    return rows


def _check_table(records: list[dict], report: dict) -> None:
    expected = _expected_rows(report)
    assert [r["key"] for r in records] == list(expected)
    for record in records:
        want = expected[record["key"]]
        for column in ("held", "video", "scheduled", "share", "target", "required", "forecast", "status"):
            assert _as_number(record[column]) == want[column], (record["key"], column)
        assert record["period"] == report["period"]


def test_report_csv_parses_back_to_the_json_numbers(client, recorded):
    report = _shares(client, recorded)
    response = client.get(f"{API}/report", headers=recorded, params={"period": "2014", "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert 'filename="remote-meetings-2014.csv"' in response.headers["content-disposition"]
    records = list(csv.DictReader(io.StringIO(response.text)))
    assert records[0]["scope"] == "government"
    assert {r["scope"] for r in records[1:]} == {"ministry"}
    _check_table(records, report)
    # MOIS: video, in person, hybrid held (hybrid counts), 1 scheduled: 2 of 3.
    mois = next(r for r in records if r["key"] == "MOIS")
    assert (mois["held"], mois["video"], mois["share"]) == ("3", "2", "0.6667")


def test_report_xlsx_opens_and_matches_the_json_numbers(client, recorded):
    report = _shares(client, recorded, ministry="MOIS")
    response = client.get(f"{API}/report", headers=recorded,
                          params={"period": "2014", "format": "xlsx", "ministry": "MOIS"})
    assert response.status_code == 200
    assert response.headers["content-type"] == XLSX_TYPE
    assert 'filename="remote-meetings-2014-MOIS.xlsx"' in response.headers["content-disposition"]
    workbook = load_workbook(io.BytesIO(response.content), read_only=True)
    sheet = workbook.worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    workbook.close()
    header = [str(c) for c in values[0]]
    records = [dict(zip(header, row, strict=False)) for row in values[1:]]
    assert [r["scope"] for r in records] == ["government", "ministry", "meeting", "meeting"]
    _check_table(records, report)
    assert isinstance(records[0]["share"], float)


def test_report_json_equals_the_shares(client, recorded):
    report = _shares(client, recorded, period="2014-Q1")
    response = client.get(f"{API}/report", headers=recorded, params={"period": "2014-Q1", "format": "json"})
    assert response.status_code == 200
    assert response.json() == report


def test_report_bad_period_and_format(client, admin):
    assert client.get(f"{API}/report", headers=admin, params={"period": "2014-00"}).json()["field"] == "period"
    response = client.get(f"{API}/report", headers=admin, params={"period": "2014", "format": "pdf"})
    assert response.status_code == 422 and response.json()["field"] == "format"


# --- open data ----------------------------------------------------------------------------------

def _walk_keys(value, path="$"):
    if isinstance(value, dict):
        for key, item in value.items():
            yield f"{path}.{key}", key
            yield from _walk_keys(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _walk_keys(item, f"{path}[{i}]")


def _personal(name: str) -> bool:
    return any(word in name.lower() for word in PERSONAL_KEYS)


def test_open_data_json_is_public_and_equals_the_shares(client, recorded, login):
    response = client.get(OPEN_DATA, params={"period": "2014"})
    assert response.status_code == 200, response.text
    data = response.json()
    authenticated = _shares(client, recorded)
    assert data["government"] == authenticated["government"]
    assert data["rows"] == authenticated["rows"]
    for path, key in _walk_keys(data):
        assert not _personal(key), path
    assert "김철수" not in response.text and "010-1234-5678" not in response.text
    assert "admin1" not in response.text


def test_open_data_csv_is_public_and_has_no_personal_columns(client, recorded):
    response = client.get(OPEN_DATA, params={"period": "2014", "format": "csv"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    records = list(csv.DictReader(io.StringIO(response.text)))
    assert records
    for column in records[0]:
        assert not _personal(column), column
    _check_table(records, _shares(client, recorded))
    assert "김철수" not in response.text and "010-1234-5678" not in response.text
    assert "admin1" not in response.text


def test_open_data_ignores_credentials_and_validates_the_period(client, recorded):
    with_auth = client.get(OPEN_DATA, params={"period": "2014"}, headers=recorded)
    assert with_auth.json() == client.get(OPEN_DATA, params={"period": "2014"}).json()
    bad = client.get(OPEN_DATA, params={"period": "last year"})
    assert bad.status_code == 422 and bad.json()["field"] == "period"
    assert client.get(OPEN_DATA, params={"period": "2014", "format": "xlsx"}).status_code == 422
