#!/usr/bin/python3
"""Row counts and deterministic checksums of PostgreSQL tables, compared with a source manifest."""

from __future__ import annotations

import hashlib
import re

from ansible.module_utils.basic import AnsibleModule

DOCUMENTATION = r"""
---
module: pg_table_checksums
short_description: Row counts and checksums of PostgreSQL tables, compared with a source manifest
description:
  - For each table, counts its rows and computes the md5 of its rows as PostgreSQL's COPY text format writes
    them (tab-separated columns in table order, NULL as \N, one line per row ending in a newline), rows ordered by
    the primary key (text key columns in byte order, COLLATE "C"), or by every column when the table has none.
  - The session uses DateStyle ISO, YMD; IntervalStyle postgres; TimeZone UTC; extra_float_digits 1;
    bytea_output hex; client_encoding UTF8, in one read-only repeatable-read transaction.
  - The source side computes the same definition (method C(copy-text-md5/1)) for its manifest.
  - Never changes anything; runs in check mode too.
options:
  db:
    description: Database to read.
    required: true
    type: str
  tables:
    description: Tables to measure (optionally schema-qualified).
    required: true
    type: list
    elements: str
  expected:
    description: The source manifest's tables, name to {rows, checksum}; mismatches are reported, not failed.
    type: dict
    default: {}
  port:
    description: Server port.
    type: int
    default: 5432
  login_unix_socket:
    description: Socket directory (peer authentication as the user the module runs as).
    type: str
    default: /var/run/postgresql
author:
  - controlplane
"""

RETURN = r"""
tables:
  description: Per table, whether it exists, its row count and checksum.
  type: dict
  returned: always
mismatches:
  description: One sentence per table that differs from I(expected).
  type: list
  returned: always
"""

METHOD = "copy-text-md5/1"
SESSION = (
    "SET DateStyle TO 'ISO, YMD'",
    "SET IntervalStyle TO 'postgres'",
    "SET TimeZone TO 'UTC'",
    "SET extra_float_digits TO 1",
    "SET bytea_output TO 'hex'",
    "SET client_encoding TO 'UTF8'",
)


class _Digest:
    """A file-like sink for COPY TO STDOUT: md5 of every byte and the number of lines."""

    def __init__(self) -> None:
        self.md5 = hashlib.md5()  # noqa: S324 - a checksum of content, not a security measure
        self.lines = 0

    def write(self, data: bytes | str) -> int:
        raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        self.md5.update(raw)
        self.lines += raw.count(b"\n")
        return len(raw)


def _measure(cursor, table: str) -> dict:
    cursor.execute(
        "SELECT c.oid, quote_ident(n.nspname) || '.' || quote_ident(c.relname) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = to_regclass(%s)",
        (table,),
    )
    found = cursor.fetchone()
    if found is None:
        return {"exists": False, "rows": None, "checksum": None}
    oid, qualified = found
    cursor.execute(
        "SELECT quote_ident(a.attname), a.attcollation <> 0 FROM pg_index i "
        "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey::int2[]) "
        "WHERE i.indrelid = %s AND i.indisprimary ORDER BY array_position(i.indkey::int2[], a.attnum)",
        (oid,),
    )
    key = cursor.fetchall()
    if not key:
        cursor.execute(
            "SELECT quote_ident(attname), attcollation <> 0 FROM pg_attribute "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
            (oid,),
        )
        key = cursor.fetchall()
    order = ", ".join(f'{name} COLLATE "C"' if collatable else name for name, collatable in key)
    digest = _Digest()
    # Both names come quoted by quote_ident() from the catalogue.
    cursor.copy_expert(f"COPY (SELECT * FROM {qualified} ORDER BY {order}) TO STDOUT", digest)  # noqa: S608
    return {"exists": True, "rows": digest.lines, "checksum": digest.md5.hexdigest(), "order_by": order}


def _mismatch(name: str, got: dict, want: dict) -> str | None:
    if not got["exists"]:
        return f"table {name} is missing (manifest: {want.get('rows')} rows)"
    problems = []
    if want.get("rows") is not None and int(want["rows"]) != got["rows"]:
        problems.append(f"{got['rows']} rows, manifest {want['rows']}")
    if want.get("checksum") and str(want["checksum"]).lower() != got["checksum"]:
        problems.append(f"checksum {got['checksum']}, manifest {want['checksum']}")
    return f"table {name}: " + ", ".join(problems) if problems else None


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "db": {"type": "str", "required": True},
            "tables": {"type": "list", "elements": "str", "required": True},
            "expected": {"type": "dict", "default": {}},
            "port": {"type": "int", "default": 5432},
            "login_unix_socket": {"type": "str", "default": "/var/run/postgresql"},
        },
        supports_check_mode=True,
    )
    try:
        import psycopg2
    except ImportError:
        module.fail_json(msg="pg_table_checksums needs psycopg2 on the host (Debian: python3-psycopg2)")
    params = module.params
    for table in params["tables"]:
        if not re.fullmatch(r"[a-z_][a-z0-9_$]*(\.[a-z_][a-z0-9_$]*)?", table):
            module.fail_json(msg=f"table name {table!r}: use lower-case identifiers, optionally schema.table")
    try:
        connection = psycopg2.connect(dbname=params["db"], host=params["login_unix_socket"], port=params["port"])
    except psycopg2.Error as exc:
        module.fail_json(msg=f"cannot connect to database {params['db']}: {str(exc).strip()}")
    tables = {}
    try:
        connection.set_session(isolation_level="REPEATABLE READ", readonly=True)
        with connection.cursor() as cursor:
            for statement in SESSION:
                cursor.execute(statement)
            for table in params["tables"]:
                tables[table] = _measure(cursor, table)
        connection.rollback()
    except psycopg2.Error as exc:
        module.fail_json(msg=f"measuring tables in {params['db']} failed: {str(exc).strip()}", tables=tables)
    finally:
        connection.close()
    mismatches = []
    for name, want in params["expected"].items():
        problem = _mismatch(name, tables.get(name) or {"exists": False}, want or {})
        if problem:
            mismatches.append(problem)
    module.exit_json(changed=False, method=METHOD, tables=tables, mismatches=mismatches)


if __name__ == "__main__":
    main()
