"""Spreadsheets in and out, safe with what callers send.

Out: a text cell that a spreadsheet program would run as a formula (OWASP's CSV-injection guidance: one starting with
=, +, -, @, tab or carriage return) is written with a leading apostrophe, in CSV and XLSX alike; numbers stay
numbers, and XLSX text cells are always strings (never formulas, never error codes). `restore` takes the apostrophe
off again for the files the control plane reads back.

In: an XLSX file is a zip archive of XML parts. Before openpyxl unpacks anything, the archive's directory is checked
(member count, each member's and the total unpacked size, compression ratio: a zip bomb unpacks a thousandfold), and
every XML part is streamed once through defusedxml's parser (no entities: no billion laughs), counting rows, cells and
text, so that what openpyxl then parses, read-only and row by row, is bounded in memory. openpyxl itself parses with
defusedxml too: it uses it whenever it is installed.
"""

from __future__ import annotations

import codecs
import csv
import io
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any
from xml.sax import SAXException
from xml.sax.handler import ContentHandler
from xml.sax.xmlreader import AttributesImpl

import defusedxml
import defusedxml.sax
from openpyxl import load_workbook
from openpyxl.cell.cell import Cell
from openpyxl.utils.cell import column_index_from_string, coordinate_from_string
from openpyxl.utils.exceptions import CellCoordinatesException
from openpyxl.worksheet.worksheet import Worksheet

MiB = 1024 * 1024
FORMULA_LEADS = ("=", "+", "-", "@", "\t", "\r")
QUOTE = "'"


# --- out: formulas written as text ---------------------------------------------------------------------------

def neutralise(value: Any) -> Any:
    """The value as a spreadsheet cell that cannot run: text that starts like a formula gets a leading apostrophe.

    Text already starting with apostrophes before such a character gets one more, so that `restore` is its exact
    inverse ('=x is written ''=x and reads back as '=x). Anything but text (numbers, negative ones included, dates,
    None) is returned as it is.
    """
    if isinstance(value, str) and value.lstrip(QUOTE).startswith(FORMULA_LEADS):
        return QUOTE + value
    return value


def restore(text: str) -> str:
    """The text `neutralise` was given: one leading apostrophe less when apostrophes precede a formula character."""
    if text.startswith(QUOTE) and text.lstrip(QUOTE).startswith(FORMULA_LEADS):
        return text[1:]
    return text


def safe_row(values: Iterable[Any]) -> list[Any]:
    return [neutralise(value) for value in values]


def csv_text(header: Sequence[str], rows: Iterable[Iterable[Any]]) -> str:
    """CSV (header row first) with every cell neutralised. Lines end in CRLF (RFC 4180): the csv module quotes a
    field for the characters of its line terminator only, and a carriage return left unquoted inside a field would
    start a new row, where a formula could sit, in a spreadsheet program."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(safe_row(header))
    writer.writerows(safe_row(row) for row in rows)
    return out.getvalue()


def append_row(sheet: Worksheet, values: Iterable[Any]) -> None:
    """Append a row of neutralised cells to the sheet; text cells are strings whatever they hold (openpyxl would
    make '#N/A' an error cell and '=...' a formula)."""
    cells = []
    for value in safe_row(values):
        cell = Cell(sheet, value=value)
        if isinstance(value, str):
            cell.data_type = "s"
        cells.append(cell)
    sheet.append(cells)


# --- in: workbooks bounded before they are parsed ------------------------------------------------------------

@dataclass(frozen=True)
class XlsxLimits:
    max_members: int = 256
    max_member_bytes: int = 64 * MiB  # unpacked, per member
    max_total_bytes: int = 128 * MiB  # unpacked, all members
    max_ratio: int = 100  # unpacked / packed (Apache POI's limit too); XML rarely compresses beyond 20:1
    ratio_from_bytes: int = MiB  # small members may compress better: they cannot grow far
    max_rows: int = 100_001
    max_columns: int = 64
    max_text_chars: int = 32_767  # Excel's own limit for a cell
    max_row_elements: int = 1024  # the elements of one row (cells, values, rich-text runs) or one shared string
    max_other_elements: int = 250_000  # per part, outside rows and shared strings (styles, workbook, relations)
    max_shared_strings: int = 500_000


XLSX_LIMITS = XlsxLimits()
# What zipfile raises for a damaged archive or member; zipfile never inflates a member beyond the size its directory
# entry declares (and checks its CRC at the end), so the declared sizes bound what anything can unpack from it.
_ZIP_ERRORS = (zipfile.BadZipFile, zlib.error, EOFError, OSError, NotImplementedError, RuntimeError, ValueError)
_BOMS = (codecs.BOM_UTF8, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)
_READ_BYTES = 256 * 1024


class SpreadsheetRefused(ValueError):
    """The file is not read; the message says why in a sentence (without the file's name)."""


def _mib(size: int) -> str:
    return f"{size / MiB:.1f} MiB" if size % MiB else f"{size // MiB} MiB"


def check_members(members: Sequence[zipfile.ZipInfo], limits: XlsxLimits = XLSX_LIMITS) -> None:
    """Refuse an archive whose directory promises too much: too many members, or too many bytes once unpacked."""
    if len(members) > limits.max_members:
        raise SpreadsheetRefused(f"the workbook has {len(members)} members (at most {limits.max_members})")
    for info in members:
        if info.file_size > limits.max_member_bytes:
            raise SpreadsheetRefused(f"{info.filename} unpacks to {_mib(info.file_size)} "
                                     f"(at most {_mib(limits.max_member_bytes)} per member)")
        if info.file_size > limits.ratio_from_bytes and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            raise SpreadsheetRefused(f"{info.filename} is compressed {info.file_size // max(info.compress_size, 1)}"
                                     f":1 (at most {limits.max_ratio}:1)")
    total = sum(info.file_size for info in members)
    if total > limits.max_total_bytes:
        raise SpreadsheetRefused(f"the workbook unpacks to {_mib(total)} (at most {_mib(limits.max_total_bytes)})")


def _looks_like_xml(head: bytes) -> bool:
    """Whether an XML parser would read past the first bytes of a member. Anything else (images, printer settings)
    stops any XML parser, openpyxl's too, at its first character."""
    stripped = head.lstrip(b" \t\r\n\x00")  # \x00: UTF-16 without a byte-order mark
    return bool(head) and (not stripped or stripped.startswith(b"<") or head.startswith(_BOMS))


def _column_of(reference: str) -> int:
    try:
        return column_index_from_string(coordinate_from_string(reference)[0])
    except (CellCoordinatesException, ValueError):
        raise SpreadsheetRefused(f"bad cell reference {reference[:20]!r}") from None


class _Bounds(ContentHandler):
    """Counts, in one XML part, what openpyxl holds in memory at once: one row (its cells and their elements) or one
    shared string, each text, and the elements outside rows that it keeps as a tree. Refuses beyond the limits."""

    def __init__(self, part: str, limits: XlsxLimits) -> None:
        super().__init__()
        self.part, self.limits = part, limits
        self.row = self.column = self.shared = self.other = self.text = 0
        self.in_item: int | None = None  # elements of the current row or shared string; None outside one

    def _refuse(self, reason: str) -> None:
        raise SpreadsheetRefused(f"{self.part}: {reason}")

    def startElement(self, name: str, attrs: AttributesImpl) -> None:
        tag, self.text = name.rpartition(":")[2], 0
        if tag == "row":
            self.row = int(attrs["r"]) if attrs.get("r", "").isdigit() else self.row + 1
            if self.row > self.limits.max_rows:
                self._refuse(f"row {self.row} is beyond the last row allowed ({self.limits.max_rows}, the header "
                             "included)")
            self.in_item, self.column = 0, 0
        elif tag == "si":
            self.shared += 1
            if self.shared > self.limits.max_shared_strings:
                self._refuse(f"more than {self.limits.max_shared_strings} shared strings")
            self.in_item = 0
        elif tag == "c" and self.in_item is not None:
            self.column = _column_of(attrs["r"]) if attrs.get("r") else self.column + 1
            if self.column > self.limits.max_columns:
                self._refuse(f"row {self.row} has a cell beyond column {self.limits.max_columns}")
        if self.in_item is None:
            self.other += 1
            if self.other > self.limits.max_other_elements:
                self._refuse(f"more than {self.limits.max_other_elements} elements")
        else:
            self.in_item += 1
            if self.in_item > self.limits.max_row_elements:
                self._refuse(f"row or shared string {self.row or self.shared} has more than "
                             f"{self.limits.max_row_elements} elements")

    def endElement(self, name: str) -> None:
        self.text = 0
        if name.rpartition(":")[2] in ("row", "si"):
            self.in_item = None

    def characters(self, content: str) -> None:
        self.text += len(content)
        if self.text > self.limits.max_text_chars:
            self._refuse(f"a text of more than {self.limits.max_text_chars} characters")


def _scan_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, limits: XlsxLimits) -> None:
    """Stream one member through defusedxml's SAX parser with _Bounds, when it is XML at all."""
    with archive.open(info) as member:
        chunk = member.read(_READ_BYTES)
        if not _looks_like_xml(chunk[:4096]):
            return
        parser = defusedxml.sax.make_parser()
        parser.setContentHandler(_Bounds(info.filename, limits))
        try:
            while chunk:
                parser.feed(chunk)
                chunk = member.read(_READ_BYTES)
            parser.close()
        except defusedxml.DefusedXmlException as exc:
            raise SpreadsheetRefused(f"{info.filename}: XML entities and external references are not allowed "
                                     f"({type(exc).__name__})") from None
        except SAXException as exc:
            raise SpreadsheetRefused(f"{info.filename} is not well-formed XML: {exc}") from None


def check_xlsx(content: bytes, limits: XlsxLimits = XLSX_LIMITS) -> None:
    """Refuse a workbook that is no zip archive, promises too much (check_members) or holds XML beyond the limits."""
    try:
        with zipfile.ZipFile(io.BytesIO(content)) as archive:
            members = archive.infolist()
            check_members(members, limits)
            for info in members:
                _scan_member(archive, info, limits)
    except SpreadsheetRefused:
        raise
    except _ZIP_ERRORS as exc:
        raise SpreadsheetRefused(f"not a readable XLSX file (a damaged or truncated zip archive: {exc})") from None


def _first_line(exc: Exception) -> str:
    return next(iter(str(exc).splitlines()), "")


def _up_to_last_value(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """The row without its trailing empty cells (iter_rows pads every row to max_col)."""
    end = len(row)
    while end and row[end - 1] is None:
        end -= 1
    return row[:end]


def xlsx_rows(content: bytes, *, max_rows: int | None = None,
              limits: XlsxLimits = XLSX_LIMITS) -> Iterator[tuple[Any, ...]]:
    """The values of the first sheet's rows (up to each row's last value), once check_xlsx has passed; every
    problem, openpyxl's included, is a SpreadsheetRefused."""
    limits = replace(limits, max_rows=max_rows) if max_rows is not None else limits
    check_xlsx(content, limits)
    try:
        workbook = load_workbook(io.BytesIO(content), read_only=True, data_only=True, keep_links=False)
    except Exception as exc:  # openpyxl raises whatever its parts' parsers raise: all mean "unreadable"
        raise SpreadsheetRefused(f"not a readable XLSX file: {_first_line(exc)}") from None
    try:
        if not workbook.worksheets:
            raise SpreadsheetRefused("the workbook has no sheet")
        sheet = workbook.worksheets[0]
        for row in sheet.iter_rows(max_row=limits.max_rows, max_col=limits.max_columns, values_only=True):
            yield _up_to_last_value(row)
    except SpreadsheetRefused:
        raise
    except Exception as exc:  # a cell openpyxl cannot read (a bad number, date or shared-string index)
        raise SpreadsheetRefused(f"not a readable XLSX file: {type(exc).__name__}: {_first_line(exc)}") from None
    finally:
        workbook.close()
