"""CSV and XLSX in and out: session imports (row-numbered) and share reports."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any

from openpyxl import Workbook
from openpyxl.chart import BarChart, Reference

from controlplane import spreadsheets
from controlplane.compliance.schemas import ShareRead, ShareReport
from controlplane.errors import InvalidInput

MAX_IMPORT_ROWS = 100_000
REPORT_COLUMNS = ("period", "scope", "key", "name_ko", "name_en", "host", "held", "video", "scheduled", "share",
                  "target", "required", "forecast", "status")
# Header aliases accepted on import, so an export from another register reads without editing.
_HEADER_ALIASES = {"meeting": "meeting_code", "code": "meeting_code", "date": "held_on", "held": "held_on"}
IMPORT_REQUIRED = ("meeting_code", "held_on", "mode")


def read_rows(filename: str, content: bytes) -> Iterator[tuple[int, dict[str, Any]]]:
    """(spreadsheet row number, {column: value}) for each non-empty data row; the header is row 1."""
    name = filename.lower()
    if name.endswith(".csv"):
        table = _csv_table(filename, content)
    elif name.endswith(".xlsx"):
        table = _xlsx_table(filename, content)
    else:
        raise InvalidInput("the file must be .csv or .xlsx", field="file")
    try:
        header = next(table)
    except StopIteration:
        raise InvalidInput("the file is empty", field="file") from None
    columns = [_HEADER_ALIASES.get(h, h) for h in (str(c or "").strip().lower() for c in header)]
    missing = [c for c in IMPORT_REQUIRED if c not in columns]
    if missing:
        raise InvalidInput(f"missing columns: {', '.join(missing)} (header row: {', '.join(map(str, header))})",
                           field="file")
    for number, values in enumerate(table, start=2):
        if number - 1 > MAX_IMPORT_ROWS:
            raise InvalidInput(f"at most {MAX_IMPORT_ROWS} rows per import", field="file")
        if all(v is None or str(v).strip() == "" for v in values):
            continue
        yield number, dict(zip(columns, values, strict=False))


def _csv_table(filename: str, content: bytes) -> Iterator[list[Any]]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidInput(f"{filename}: a CSV file must be UTF-8", field="file") from None
    try:
        yield from csv.reader(io.StringIO(text))
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB
        raise InvalidInput(f"{filename}: not a readable CSV file: {exc}", field="file") from None


def _xlsx_table(filename: str, content: bytes) -> Iterator[list[Any]]:
    """The first sheet's rows, MAX_IMPORT_ROWS data rows at most: the workbook is checked before it is unpacked
    (sizes, XML entities, rows and cells; see controlplane.spreadsheets), then streamed."""
    try:
        for row in spreadsheets.xlsx_rows(content, max_rows=MAX_IMPORT_ROWS + 1):
            yield list(row)
    except spreadsheets.SpreadsheetRefused as exc:
        raise InvalidInput(f"{filename}: {exc}", field="file") from None


def parse_day(value: Any) -> date:
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value).strip())


def _row(report: ShareReport, scope: str, key: str, name_ko: str, name_en: str, host: str | None,
         share: ShareRead) -> list[Any]:
    return [report.period, scope, key, name_ko, name_en, host or "", share.held, share.video, share.scheduled,
            "" if share.share is None else share.share, "" if share.target is None else share.target,
            share.required, share.forecast, share.status.value]


def report_rows(report: ShareReport) -> list[list[Any]]:
    rows = [_row(report, "government", "ALL", "정부 전체", "Government-wide", None, report.government)]
    if report.ministry is not None:
        m = report.ministry
        rows.append(_row(report, "ministry", m.key, m.name_ko, m.name_en, m.host, m))
    rows += [_row(report, report.scope, r.key, r.name_ko, r.name_en, r.host, r) for r in report.rows]
    return rows


def report_csv(report: ShareReport) -> str:
    """The report as CSV; names that start like formulas are written as text (controlplane.spreadsheets)."""
    return spreadsheets.csv_text(REPORT_COLUMNS, report_rows(report))


def report_xlsx(report: ShareReport) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = f"shares {report.period}"
    spreadsheets.append_row(sheet, REPORT_COLUMNS)
    for row in report_rows(report):
        spreadsheets.append_row(sheet, row)  # text as string cells, never formulas
    share_col = REPORT_COLUMNS.index("share") + 1
    for cells in sheet.iter_rows(min_row=2, min_col=share_col, max_col=share_col + 1):
        for cell in cells:
            cell.number_format = "0.0%"
    if sheet.max_row > 2:
        chart = BarChart()
        chart.title = f"Video share {report.period}"
        chart.add_data(Reference(sheet, min_col=share_col, min_row=1, max_row=sheet.max_row), titles_from_data=True)
        chart.set_categories(Reference(sheet, min_col=3, min_row=2, max_row=sheet.max_row))
        sheet.add_chart(chart, "P2")
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()
