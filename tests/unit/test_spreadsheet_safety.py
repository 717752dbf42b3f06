"""Spreadsheets in and out: formula-leading text is written as text (CSV and XLSX) and read back as it was; workbooks
are checked before they are unpacked (member count, sizes, compression ratio), their XML refuses entities (openpyxl
parses through defusedxml) and their rows and cells are bounded; YAML inventories refuse alias bombs."""

from __future__ import annotations

import csv
import io
import os
import zipfile
from datetime import date
from typing import Any

import defusedxml
import openpyxl
import pytest
import yaml
from openpyxl import Workbook, load_workbook

from controlplane import spreadsheets
from controlplane.compliance import tabular
from controlplane.compliance.domain import ShareStatus
from controlplane.compliance.schemas import ShareRead, ShareReport, ShareRow
from controlplane.errors import InvalidInput
from controlplane.inventory import files
from controlplane.inventory.domain import InventoryError

MiB = 1024 * 1024
SHEET = "xl/worksheets/sheet1.xml"
FORMULAS = ["=cmd|' /C calc'!A0", '=HYPERLINK("http://evil.example","x")', "+1+1", "-2+3", "@SUM(1)", "\t=1",
            "\r=1"]
NS = b'xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"'


# --- formulas out ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text", FORMULAS)
def test_text_that_starts_like_a_formula_gets_a_leading_quote_and_comes_back(text: str) -> None:
    assert spreadsheets.neutralise(text) == "'" + text
    assert spreadsheets.restore(spreadsheets.neutralise(text)) == text


@pytest.mark.parametrize("value", [-1, -2.5, 0, 3, None, True, "", "plain", "a=b", " =1", "'", "'x", "''",
                                   date(2014, 1, 1)])
def test_numbers_and_harmless_text_stay_as_they_are(value: Any) -> None:
    assert spreadsheets.neutralise(value) == value
    if isinstance(value, str):
        assert spreadsheets.restore(spreadsheets.neutralise(value)) == value


@pytest.mark.parametrize("text", ["'=already quoted", "''-twice", "'@x"])
def test_text_with_its_own_quote_before_a_formula_character_round_trips(text: str) -> None:
    assert spreadsheets.neutralise(text) == "'" + text
    assert spreadsheets.restore(spreadsheets.neutralise(text)) == text


def _share(**fields: Any) -> dict[str, Any]:
    return {"held": 2, "video": 1, "scheduled": 0, "share": 0.5, "target": 0.5, "required": 1, "video_needed": 0,
            "forecast": 0, "status": ShareStatus.ON_TRACK, **fields}


def _report() -> ShareReport:
    rows = [ShareRow(key=f"K{i}", name_ko=text, name_en=f"x{text}", host="MOIS", **_share(held=i))
            for i, text in enumerate(FORMULAS)]
    return ShareReport(period="2014", start=date(2014, 1, 1), end=date(2014, 12, 31), scope="meeting",
                       government=ShareRead(**_share()), rows=rows)


def test_the_report_csv_writes_formula_names_as_quoted_text() -> None:
    records = list(csv.DictReader(io.StringIO(tabular.report_csv(_report()))))
    assert [r["name_ko"] for r in records[1:]] == ["'" + text for text in FORMULAS]
    assert [r["name_en"] for r in records[1:]] == ["x" + text for text in FORMULAS]  # not leading: as it is
    assert [r["held"] for r in records[1:]] == [str(i) for i in range(len(FORMULAS))]


def test_the_report_xlsx_writes_text_as_string_cells_and_numbers_as_numbers() -> None:
    sheet = load_workbook(io.BytesIO(tabular.report_xlsx(_report()))).worksheets[0]
    header = [c.value for c in sheet[1]]
    names = [row[header.index("name_ko")] for row in sheet.iter_rows(min_row=3)]
    # (XML reads a carriage return back as a line feed: openpyxl's, not ours.)
    assert [(c.data_type, c.value) for c in names] == [("s", "'" + text.replace("\r", "\n")) for text in FORMULAS]
    share = sheet.cell(row=2, column=header.index("share") + 1)
    assert (share.data_type, share.value) == ("n", 0.5)
    assert not [c.coordinate for row in sheet.iter_rows() for c in row if c.data_type == "f"]


def test_xlsx_rows_write_negative_numbers_as_numbers_and_error_codes_as_text() -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    spreadsheets.append_row(sheet, [-1, -2.5, "-1", "#N/A", "=1+1", None])
    out = io.BytesIO()
    workbook.save(out)
    cells = next(load_workbook(out).worksheets[0].iter_rows())
    assert [(c.data_type, c.value) for c in cells[:5]] == [("n", -1), ("n", -2.5), ("s", "'-1"), ("s", "#N/A"),
                                                            ("s", "'=1+1")]


def test_the_inventory_csv_quotes_formula_names_and_reads_back_the_same_systems() -> None:
    source = yaml.safe_dump({"systems": [
        {"code": f"sys-{i}", "agency": "MOIS", "name_ko": text.strip(), "name_en": "'" + text.strip(),
         "notes": text.strip(), "criticality": "low", "vcpus": 1, "ram_mb": 1024, "disk_gb": 10,
         "components": [{"kind": "os", "vendor": "IBM", "product": "AIX", "version": "7.1"}]}
        for i, text in enumerate(FORMULAS[:5])]})
    systems = files.read_inventory("x.yaml", source)
    text = files.inventory_to_csv(systems)
    records = list(csv.DictReader(io.StringIO(text)))
    assert [r["name_ko"] for r in records] == ["'" + s.name_ko for s in systems]
    assert [r["name_en"] for r in records] == ["'" + s.name_en for s in systems]
    assert [r["vcpus"] for r in records] == ["1"] * 5
    assert files.read_inventory("systems.csv", text) == systems


# --- workbooks in ------------------------------------------------------------------------------------------

def _workbook(rows: list[list[Any]]) -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


GOOD = _workbook([["meeting_code", "held_on", "mode"], ["MOIS-LOCAL", "2014-01-10", "video"]])


def _with_sheet(sheet_xml: bytes, extra: dict[str, bytes] | None = None, *, stored: bool = False) -> bytes:
    """GOOD with its sheet's XML replaced and `extra` members added (stored uncompressed when `stored`)."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(GOOD)) as source, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            target.writestr(info.filename, sheet_xml if info.filename == SHEET else source.read(info.filename))
        for name, data in (extra or {}).items():
            target.writestr(name, data, compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return out.getvalue()


def _sheet(rows: bytes, doctype: bytes = b"") -> bytes:
    return b'<?xml version="1.0"?>' + doctype + b"<worksheet " + NS + b"><sheetData>" + rows + \
        b"</sheetData></worksheet>"


HEADER_ROW = (b'<row r="1"><c r="A1" t="inlineStr"><is><t>meeting_code</t></is></c><c r="B1" t="inlineStr"><is>'
              b'<t>held_on</t></is></c><c r="C1" t="inlineStr"><is><t>mode</t></is></c></row>')


def _refusal(name: str, content: bytes) -> str:
    with pytest.raises(InvalidInput) as caught:
        list(tabular.read_rows(name, content))
    assert caught.value.field == "file" and name in caught.value.message, caught.value.message
    return caught.value.message


def test_a_member_that_unpacks_far_beyond_its_size_is_refused_before_parsing() -> None:
    assert list(tabular.read_rows("ok.xlsx", GOOD)) == [
        (2, {"meeting_code": "MOIS-LOCAL", "held_on": "2014-01-10", "mode": "video"})]  # a real one still reads
    bomb = _with_sheet(_sheet(HEADER_ROW + b'<row r="2"><c r="A2" t="inlineStr"><is><t>' + b"A" * (20 * MiB) +
                              b"</t></is></c></row>"))
    assert len(bomb) < MiB
    assert "compress" in _refusal("ratio.xlsx", bomb)


def test_members_over_the_size_limits_are_refused() -> None:
    big = os.urandom(spreadsheets.XLSX_LIMITS.max_member_bytes + 1)  # incompressible: no ratio to refuse
    message = _refusal("big.xlsx", _with_sheet(_sheet(HEADER_ROW), {"xl/media/image1.bin": big}, stored=True))
    assert "xl/media/image1.bin" in message and "MiB" in message


def test_too_many_members_are_refused() -> None:
    extra = {f"xl/media/image{i}.png": b"\x89PNG" for i in range(spreadsheets.XLSX_LIMITS.max_members)}
    assert "members" in _refusal("many.xlsx", _with_sheet(_sheet(HEADER_ROW), extra))


def test_rows_wider_than_the_column_limit_are_refused() -> None:
    width = spreadsheets.XLSX_LIMITS.max_columns + 1
    wide = b'<row r="2">' + b"".join(b"<c><v>%d</v></c>" % i for i in range(width)) + b"</row>"
    assert "column" in _refusal("wide.xlsx", _with_sheet(_sheet(HEADER_ROW + wide)))
    far = b'<row r="2"><c r="XFD2"><v>1</v></c></row>'  # one cell, but openpyxl would pad the row to 16384
    assert "column" in _refusal("far.xlsx", _with_sheet(_sheet(HEADER_ROW + far)))


def test_a_row_far_down_the_sheet_is_refused() -> None:
    # openpyxl fills the rows in between: a million empty rows from one element.
    far = b'<row r="1048576"><c r="A1048576"><v>1</v></c></row>'
    assert "beyond the last row" in _refusal("tall.xlsx", _with_sheet(_sheet(HEADER_ROW + far)))


def test_a_cell_longer_than_excel_allows_is_refused() -> None:
    long = b'<row r="2"><c r="A2" t="inlineStr"><is><t>' + b"x" * 40_000 + b"</t></is></c></row>"
    assert "characters" in _refusal("long.xlsx", _with_sheet(_sheet(HEADER_ROW + long)))


LAUGHS = b'<!DOCTYPE worksheet [<!ENTITY lol "lol">' + b"".join(
    b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10)) + b"]>"


def test_openpyxl_parses_through_defusedxml_and_refuses_billion_laughs() -> None:
    assert openpyxl.DEFUSEDXML is True
    laughs = _with_sheet(_sheet(HEADER_ROW + b'<row r="2"><c r="A2" t="inlineStr"><is><t>&lol9;</t></is></c></row>',
                                LAUGHS))
    with pytest.raises(ValueError) as caught:  # openpyxl wraps what its parser raises in a ValueError of its own
        workbook = load_workbook(io.BytesIO(laughs), read_only=True)
        list(workbook.worksheets[0].iter_rows(values_only=True))
    assert isinstance(caught.value, defusedxml.EntitiesForbidden) or \
        isinstance(caught.value.__cause__, defusedxml.EntitiesForbidden), repr(caught.value)
    assert "entit" in _refusal("laughs.xlsx", laughs).lower()


@pytest.mark.parametrize("name,content", [
    ("half.xlsx", GOOD[: len(GOOD) // 2]),
    ("cut.xlsx", _with_sheet(_sheet(HEADER_ROW)[:-40])),
    ("not-a-number.xlsx", _with_sheet(_sheet(HEADER_ROW + b'<row r="2"><c r="A2" t="n"><v>abc</v></c></row>'))),
    ("bad-string.xlsx", _with_sheet(_sheet(HEADER_ROW + b'<row r="2"><c r="A2" t="s"><v>99</v></c></row>'))),
    ("bad-ref.xlsx", _with_sheet(_sheet(HEADER_ROW + b'<row r="2"><c r="2A"><v>1</v></c></row>'))),
])
def test_a_malformed_workbook_is_refused_naming_the_file(name: str, content: bytes) -> None:
    _refusal(name, content)


def test_a_bad_csv_field_is_refused_naming_the_file() -> None:
    content = b"meeting_code,held_on,mode,note\nMOIS-LOCAL,2014-01-10,video,\"" + b"x" * 200_000 + b'"\n'
    _refusal("huge-field.csv", content)


# --- YAML inventories --------------------------------------------------------------------------------------

def _alias_bomb(levels: int) -> str:
    lines = ['- &l0 "lol"']
    lines += [f"- &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]" for i in range(1, levels + 1)]
    lines.append(f"- {{code: bomb, agency: *l{levels}}}")
    return "\n".join(lines) + "\n"


def test_a_yaml_alias_bomb_is_refused_before_it_is_expanded_but_a_few_anchors_read() -> None:
    with pytest.raises(InventoryError, match="alias"):
        files.inventory_file_rows("bomb.yaml", _alias_bomb(6))
    text = ("- &base {code: sys-a, agency: MOIS, name_en: A, criticality: low, vcpus: 1, ram_mb: 1024, disk_gb: 10,\n"
            "          components: [{kind: os, vendor: IBM, product: AIX, version: '7.1'}]}\n"
            "- {<<: *base, code: sys-b}\n")
    assert [s.code for s in files.read_inventory("anchors.yaml", text)] == ["sys-a", "sys-b"]


def test_a_recursive_yaml_alias_is_refused() -> None:
    with pytest.raises(InventoryError, match="alias"):
        files.inventory_file_rows("loop.yaml", "- &a {code: x, depends_on: [*a]}\n")


def test_a_yaml_file_with_too_many_nodes_is_refused() -> None:
    text = "[" + ", ".join(["1"] * (files.MAX_YAML_NODES + 1)) + "]\n"
    with pytest.raises(InventoryError, match="nodes"):
        files.inventory_file_rows("many.yaml", text)
