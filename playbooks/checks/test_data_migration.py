"""Checks of the data_migration role: each manifest table's row count and checksum, measured here independently
of the role's module (count(*), and psql's COPY output through md5sum on the host)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
from conftest import literal, psql

ROLE = "data_migration"
# Table names are identifiers the role accepts (lower case, optionally schema-qualified): safe to put in SQL.
TABLE = re.compile(r"[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)?")
SESSION = ("SET DateStyle TO 'ISO, YMD'; SET IntervalStyle TO 'postgres'; SET TimeZone TO 'UTC'; "
           "SET extra_float_digits TO 1; SET bytea_output TO 'hex'; SET client_encoding TO 'UTF8';")


def _manifest(role_vars: dict[str, Any]) -> dict[str, Any]:
    if role_vars["data_migration_manifest"]:
        tables = dict(role_vars["data_migration_manifest"]["tables"])
    else:
        tables = dict(json.loads(Path(role_vars["data_migration_manifest_src"]).read_text())["tables"])
    bad = [name for name in tables if not TABLE.fullmatch(name)]
    assert not bad, f"not table names the role accepts: {bad}"
    return tables


def _order_by(host: Any, db: str, port: int, table: str) -> str:
    key = psql(host, "SELECT string_agg(quote_ident(a.attname) || CASE WHEN a.attcollation <> 0 THEN ' COLLATE \"C\"' "  # noqa: S608
                     "ELSE '' END, ', ' ORDER BY array_position(i.indkey::int2[], a.attnum)) FROM pg_index i "
                     "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[]) "
                     f"WHERE i.indrelid = {literal(table)}::regclass AND i.indisprimary", db=db, port=port)
    if key:
        return key
    return psql(host, "SELECT string_agg(quote_ident(attname) || CASE WHEN attcollation <> 0 THEN ' COLLATE \"C\"' "  # noqa: S608
                      "ELSE '' END, ', ' ORDER BY attnum) FROM pg_attribute "
                      f"WHERE attrelid = {literal(table)}::regclass AND attnum > 0 AND NOT attisdropped",
                db=db, port=port)


def test_tables_match_the_source_manifest(host: Any, role_vars: dict[str, Any]) -> None:
    db, port = role_vars["data_migration_db_name"], int(role_vars["data_migration_port"])
    manifest = _manifest(role_vars)
    assert manifest, "the manifest lists no table"
    problems = []
    for table, expected in sorted(manifest.items()):
        if psql(host, f"SELECT to_regclass({literal(table)}) IS NOT NULL", db=db, port=port) != "t":
            problems.append(f"{table}: missing")
            continue
        rows = int(psql(host, f"SELECT count(*) FROM {table}", db=db, port=port))  # noqa: S608
        order = _order_by(host, db, port, table)
        copy = f"{SESSION} COPY (SELECT * FROM {table} ORDER BY {order}) TO STDOUT"  # noqa: S608
        command = (f"set -o pipefail; runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p {port} "
                   f"-d {shlex.quote(db)} -c {shlex.quote(copy)} | md5sum")
        checksum = host.check_output(f"bash -c {shlex.quote(command)}").split()[0]
        if rows != int(expected["rows"]):
            problems.append(f"{table}: {rows} rows, manifest {expected['rows']}")
        if checksum != str(expected["checksum"]).lower():
            problems.append(f"{table}: checksum {checksum}, manifest {expected['checksum']}")
    assert not problems, "; ".join(problems)


def test_owner_owns_the_tables(host: Any, role_vars: dict[str, Any]) -> None:
    db, port = role_vars["data_migration_db_name"], int(role_vars["data_migration_port"])
    for table in _manifest(role_vars):
        owner = psql(host, f"SELECT pg_get_userbyid(relowner) FROM pg_class WHERE oid = to_regclass({literal(table)})",  # noqa: S608
                     db=db, port=port)
        assert owner == role_vars["data_migration_db_owner"], table


def test_no_staged_data_is_left(host: Any, role_vars: dict[str, Any]) -> None:
    if role_vars["data_migration_keep_staging"]:
        pytest.skip("data_migration_keep_staging is set")
    assert not host.file(f"{role_vars['data_migration_staging_dir']}/{role_vars['data_migration_db_name']}").exists
