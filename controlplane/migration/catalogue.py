"""The migration data files, and inventory files in and out (CSV, YAML), read into the domain's dataclasses.

The rules (validation, matching, row errors) are in controlplane.migration.domain; this module only reads and
writes text. File-level problems (not UTF-8, not YAML, unknown CSV columns) are InventoryError findings with the
field `file`, like row problems, so an import reports everything in one shape.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from controlplane.migration.domain import (
    INVENTORY_FIELDS,
    Catalogue,
    CatalogueError,
    Finding,
    InventoryError,
    System,
    catalogue_from_data,
    inventory_rows,
    parse_inventory,
)

DATA_DIR = Path(__file__).parent / "data"
CATALOGUE_FILE = DATA_DIR / "catalogue.yaml"
SAMPLE_INVENTORY_FILE = DATA_DIR / "sample_inventory.yaml"


def load_catalogue(path: Path | None = None) -> Catalogue:
    """The component catalogue (default: the shipped one); raises CatalogueError naming every bad entry."""
    target = path or CATALOGUE_FILE
    try:
        data = yaml.safe_load(target.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise CatalogueError.of([Finding("invalid", f"{target.name} is not valid YAML: {exc}", field="file")]) from None
    return catalogue_from_data(data)


def load_sample_inventory(path: Path | None = None) -> tuple[System, ...]:
    """The shipped sample inventory (about 50 systems of a few agencies)."""
    target = path or SAMPLE_INVENTORY_FILE
    return read_inventory(target.name, target.read_bytes())


def read_inventory(filename: str, content: bytes | str) -> tuple[System, ...]:
    """Systems from an uploaded .csv, .yaml or .yml file, all or nothing (InventoryError with every bad row).

    CSV rows are numbered as in a spreadsheet (the header is row 1); YAML systems by their place in the list, from 1.
    """
    rows, first_row = inventory_file_rows(filename, content)
    return parse_inventory(rows, first_row=first_row)


def inventory_file_rows(filename: str, content: bytes | str) -> tuple[list[Any], int]:
    """The rows of an uploaded .csv, .yaml or .yml file, not validated yet, and the number of the first (2 in CSV:
    the header is row 1); InventoryError for a file that cannot be read as one."""
    text = _decode(content)
    name = filename.lower()
    if name.endswith(".csv"):
        return inventory_rows_from_csv(text), 2
    if name.endswith((".yaml", ".yml")):
        return inventory_rows_from_yaml(text), 1
    raise InventoryError.of([Finding("invalid", "the file must be .csv, .yaml or .yml", field="file")])


def inventory_rows_from_csv(text: str) -> list[dict[str, str]]:
    """One dict per line after the header (blank lines too, as empty dicts, so row numbers stay the file's)."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise InventoryError.of([Finding("invalid", "the file is empty", field="file")]) from None
    # A misspelt column would silently lose its values on every row: refused once, here.
    unknown = [h for h in header if h and h not in INVENTORY_FIELDS]
    missing = [f for f in ("code", "agency", "criticality", "vcpus", "ram_mb", "disk_gb", "components")
               if f not in header]
    problems = []
    if unknown:
        problems.append(Finding("unknown_field", f"unknown columns: {', '.join(unknown)} (the columns are "
                                                 f"{', '.join(INVENTORY_FIELDS)})", field="file", row=1))
    if missing:
        problems.append(Finding("required", f"missing columns: {', '.join(missing)}", field="file", row=1))
    if problems:
        raise InventoryError.of(problems)
    rows = list(reader)
    long = [Finding("invalid", f"has {len(values)} values for {len(header)} columns (quote values with commas)",
                    field="file", row=number)
            for number, values in enumerate(rows, start=2) if len(values) > len(header)]
    if long:
        raise InventoryError.of(long)
    return [{h: v for h, v in zip(header, values, strict=False) if h} for values in rows]


def inventory_rows_from_yaml(text: str) -> list[Any]:
    """The list of systems of a YAML file: either `systems: [...]` or a bare list."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InventoryError.of([Finding("invalid", f"not valid YAML: {exc}", field="file")]) from None
    if isinstance(data, dict) and set(data) == {"systems"}:
        data = data["systems"]
    if not isinstance(data, list):
        raise InventoryError.of([Finding("invalid", "a YAML inventory is a list of systems (or `systems:` with one)",
                                         field="file")])
    return data


def inventory_to_csv(systems: Iterable[System]) -> str:
    """CSV with a header row; reads back with read_inventory to the same systems."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(INVENTORY_FIELDS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(inventory_rows(systems, flat=True))
    return out.getvalue()


def inventory_to_yaml(systems: Iterable[System]) -> str:
    """YAML (`systems:` list); reads back with read_inventory to the same systems."""
    return yaml.safe_dump({"systems": inventory_rows(systems)}, allow_unicode=True, sort_keys=False, width=120)


def _decode(content: bytes | str) -> str:
    if isinstance(content, str):
        return content
    try:
        return content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InventoryError.of([Finding("invalid", "the file must be UTF-8", field="file")]) from None
