"""The migration data files, and inventory files in and out (CSV, YAML), read into the domain's dataclasses.

The rules (validation, matching, row errors) are in the pure modules (domain, matching); this module only reads and
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

from controlplane import spreadsheets
from controlplane.inventory.domain import (
    INVENTORY_FIELDS,
    CatalogueError,
    Finding,
    InventoryError,
    System,
    inventory_rows,
    parse_inventory,
)
from controlplane.inventory.matching import Catalogue, catalogue_from_data

DATA_DIR = Path(__file__).parent / "data"
CATALOGUE_FILE = DATA_DIR / "catalogue.yaml"
SAMPLE_INVENTORY_FILE = DATA_DIR / "sample_inventory.yaml"
# An uploaded YAML inventory has at most this many nodes (scalars, lists, mappings), every alias counted as the nodes
# it stands for: about 4,000 systems (the sample has 62 per system), and a few lines of nested aliases that would
# expand to billions ("billion laughs") are refused before anything is built.
MAX_YAML_NODES = 250_000
# libyaml when PyYAML has it: the same documents and data, a fraction of the time and memory.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


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
    except csv.Error as exc:
        raise InventoryError.of([Finding("invalid", f"not a readable CSV file: {exc}", field="file")]) from None
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
    try:
        rows = list(reader)
    except csv.Error as exc:  # e.g. a field over the csv module's 128 KiB
        raise InventoryError.of([Finding("invalid", f"not a readable CSV file: {exc}", field="file",
                                         row=reader.line_num)]) from None
    long = [Finding("invalid", f"has {len(values)} values for {len(header)} columns (quote values with commas)",
                    field="file", row=number)
            for number, values in enumerate(rows, start=2) if len(values) > len(header)]
    if long:
        raise InventoryError.of(long)
    # The apostrophe an export put before a formula-like value (inventory_to_csv) is not part of the value.
    return [{h: spreadsheets.restore(v) for h, v in zip(header, values, strict=False) if h} for values in rows]


def inventory_rows_from_yaml(text: str) -> list[Any]:
    """The list of systems of a YAML file: either `systems: [...]` or a bare list (MAX_YAML_NODES at most)."""
    try:
        check_yaml_nodes(text, MAX_YAML_NODES)
        data = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506  (a safe loader: SafeLoader or CSafeLoader)
    except yaml.YAMLError as exc:
        raise InventoryError.of([Finding("invalid", f"not valid YAML: {exc}", field="file")]) from None
    if isinstance(data, dict) and set(data) == {"systems"}:
        data = data["systems"]
    if not isinstance(data, list):
        raise InventoryError.of([Finding("invalid", "a YAML inventory is a list of systems (or `systems:` with one)",
                                         field="file")])
    return data


def check_yaml_nodes(text: str, limit: int) -> None:
    """Refuse (InventoryError) a YAML text of more than `limit` nodes, each alias counted as the nodes of what it
    refers to; reads the parser's events only, building nothing."""
    sizes: dict[str, int] = {}  # anchor -> the nodes it stands for, aliases expanded
    open_nodes: list[list[Any]] = []  # the lists and mappings being read: [anchor, their nodes so far]
    total = 0
    for event in yaml.parse(text, Loader=_YAML_LOADER):
        if isinstance(event, yaml.CollectionEndEvent):
            anchor, count = open_nodes.pop()
            if anchor is not None:
                sizes[anchor] = count
            if open_nodes:
                open_nodes[-1][1] += count
            continue
        if isinstance(event, yaml.CollectionStartEvent):
            open_nodes.append([event.anchor, 1])
            total += 1
        elif isinstance(event, yaml.AliasEvent | yaml.ScalarEvent):
            count = 1 if isinstance(event, yaml.ScalarEvent) else sizes.get(event.anchor or "", 0)
            if count == 0:  # undefined, or the alias is inside the node it refers to (still open)
                raise InventoryError.of([Finding("invalid", f"the YAML alias *{event.anchor} refers to no complete "
                                                            "node before it", field="file")])
            if isinstance(event, yaml.ScalarEvent) and event.anchor is not None:
                sizes[event.anchor] = 1
            total += count
            if open_nodes:
                open_nodes[-1][1] += count
        if total > limit:
            raise InventoryError.of([Finding("invalid", f"the YAML has more than {limit} nodes once its aliases "
                                                        "are expanded", field="file")])


def inventory_to_csv(systems: Iterable[System]) -> str:
    """CSV with a header row; reads back with read_inventory to the same systems. Values that start like formulas
    get a leading apostrophe (read_inventory takes it off)."""
    return spreadsheets.csv_text(INVENTORY_FIELDS, ([row[name] for name in INVENTORY_FIELDS]
                                                     for row in inventory_rows(systems, flat=True)))


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
