"""Artifacts the role and migration tests deploy and load, made here byte for byte the same on every run: a WAR, a
static site, a plain pg_dump of a dataset with its source manifest (row counts and checksums, method
copy-text-md5/1), and a small HTTP server the hosts download from."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import random
import tarfile
import threading
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

KST = timezone(timedelta(hours=9))


# Artifacts and their server ----------------------------------------------------------------------------------


def sha256_of(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def make_war(path: Path, text: str) -> Path:
    """A minimal web application archive (index.html, WEB-INF/web.xml); the same bytes on every run."""
    entries = {
        "META-INF/MANIFEST.MF": "Manifest-Version: 1.0\r\n\r\n",
        "WEB-INF/web.xml": ('<?xml version="1.0" encoding="UTF-8"?>\n'
                            '<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">\n'
                            "  <display-name>minwon</display-name>\n</web-app>\n"),
        "index.html": f"<!doctype html><title>minwon</title><p>{text}</p>\n",
    }
    with zipfile.ZipFile(path, "w") as war:
        for name, content in entries.items():
            war.writestr(zipfile.ZipInfo(name, date_time=(2014, 7, 1, 0, 0, 0)), content)
    return path


def make_site(path: Path, pages: dict[str, str]) -> Path:
    """A static site as a .tar.gz of pages (relative path -> text); the same bytes on every run."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, text in pages.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_404_172_800
            archive.addfile(info, io.BytesIO(data))
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed:
        compressed.write(buffer.getvalue())
    return path


class ArtifactServer:
    """Serves a directory over HTTP on the hosts' gateway address (the hosts route only to this machine)."""

    def __init__(self, directory: Path, address: str) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer((address, 0), handler)
        self.base = f"http://{address}:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


# Data: COPY text format, the manifest's checksum method (copy-text-md5/1) ------------------------------------


def copy_text(value: Any) -> str:
    """One value as PostgreSQL's COPY text format writes it (DateStyle ISO, TimeZone UTC)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:.2f}"
    text = str(value)
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def table_manifest(rows: list[tuple[Any, ...]], key: int | None = 0) -> dict[str, Any]:
    """Row count and checksum of a table's rows: COPY text lines in primary-key (byte) order, md5."""
    ordered = sorted(rows, key=lambda row: _sort_key(row[key]) if key is not None else tuple(map(_sort_key, row)))
    digest = hashlib.md5()
    for row in ordered:
        digest.update(("\t".join(copy_text(v) for v in row) + "\n").encode())
    return {"rows": len(rows), "checksum": digest.hexdigest()}


def _sort_key(value: Any) -> Any:
    return value.encode() if isinstance(value, str) else value


@dataclass
class Dataset:
    agencies: list[tuple[Any, ...]]
    requests: list[tuple[Any, ...]]
    audit: list[tuple[Any, ...]]

    def manifest(self) -> dict[str, Any]:
        return {"method": "copy-text-md5/1", "tables": {
            "public.agencies": table_manifest(self.agencies),
            "public.requests": table_manifest(self.requests),
            "public.audit_log": table_manifest(self.audit, key=None),
        }}


def make_dataset(rows: int = 1500, seed: int = 20140701) -> Dataset:
    """Agencies (text key in mixed case, Korean names), civil requests (tabs, newlines, backslashes, NULLs,
    numerics, timestamps) and an audit log without a primary key."""
    rng = random.Random(seed)
    agencies = [("MOIS", "행정안전부", date(2017, 7, 26)), ("MOEF", "기획재정부", date(2008, 2, 29)),
                ("MSIT", "과학기술정보통신부", date(2017, 7, 26)), ("moel", "고용노동부", date(2010, 7, 5)),
                ("Ab_x", "테스트\t기관", None), ("Z9", "back\\slash", date(1999, 1, 1))]
    subjects = ["여권 재발급", "주민등록 등본", "line one\nline two", "tab\there", "C:\\path\\to", "plain", "전입신고"]
    requests = []
    start = datetime(2014, 1, 1, tzinfo=UTC)
    for number in range(1, rows + 1):
        amount = None if number % 11 == 0 else Decimal(rng.randrange(0, 10_000_000)) / 100
        received = start + timedelta(minutes=rng.randrange(0, 500_000))
        requests.append((number, rng.choice(agencies)[0], f"{rng.choice(subjects)} #{number}", amount,
                         number % 7 == 0, received))
    audit = [(date(2014, 7, 1) + timedelta(days=i % 5), f"event {i % 9}") for i in range(40)]
    return Dataset(agencies, requests, audit)


def write_dump(data: Dataset, path: Path) -> Path:
    """A plain pg_dump (--no-owner --no-privileges) of the dataset, as PostgreSQL 15's pg_dump writes one.

    Rows are shuffled, numerics unpadded and timestamps in KST: the checksum is over what the server stores."""
    rng = random.Random(7)

    def line(row: Iterable[Any]) -> str:
        values = []
        for value in row:
            if isinstance(value, Decimal):
                values.append(format(value.normalize(), "f"))
            elif isinstance(value, datetime):
                values.append(value.astimezone(KST).strftime("%Y-%m-%d %H:%M:%S+09"))
            else:
                values.append(copy_text(value))
        return "\t".join(values)

    def shuffled(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        copy = list(rows)
        rng.shuffle(copy)
        return copy

    parts = [
        "--\n-- PostgreSQL database dump\n--\n\n-- Dumped from database version 15.14\n\n",
        "SET statement_timeout = 0;\nSET lock_timeout = 0;\nSET idle_in_transaction_session_timeout = 0;\n",
        "SET client_encoding = 'UTF8';\nSET standard_conforming_strings = on;\n",
        "SELECT pg_catalog.set_config('search_path', '', false);\nSET check_function_bodies = false;\n",
        "SET xmloption = content;\nSET client_min_messages = warning;\nSET row_security = off;\n\n",
        "SET default_tablespace = '';\n\nSET default_table_access_method = heap;\n\n",
        "CREATE TABLE public.agencies (\n    code text NOT NULL,\n    name_ko text NOT NULL,\n    founded date\n);\n\n",
        "CREATE TABLE public.requests (\n    id integer NOT NULL,\n    agency_code text NOT NULL,\n"
        "    subject text NOT NULL,\n    amount numeric(12,2),\n    urgent boolean NOT NULL,\n"
        "    received timestamp with time zone NOT NULL\n);\n\n",
        "CREATE SEQUENCE public.requests_id_seq\n    AS integer\n    START WITH 1\n    INCREMENT BY 1\n"
        "    NO MINVALUE\n    NO MAXVALUE\n    CACHE 1;\n\n",
        "ALTER SEQUENCE public.requests_id_seq OWNED BY public.requests.id;\n\n",
        "CREATE TABLE public.audit_log (\n    day date NOT NULL,\n    message text NOT NULL\n);\n\n",
        "ALTER TABLE ONLY public.requests ALTER COLUMN id SET DEFAULT "
        "nextval('public.requests_id_seq'::regclass);\n\n",
        "COPY public.agencies (code, name_ko, founded) FROM stdin;\n",
        *(line(r) + "\n" for r in shuffled(data.agencies)), "\\.\n\n",
        "COPY public.requests (id, agency_code, subject, amount, urgent, received) FROM stdin;\n",
        *(line(r) + "\n" for r in shuffled(data.requests)), "\\.\n\n",
        "COPY public.audit_log (day, message) FROM stdin;\n",
        *(line(r) + "\n" for r in shuffled(data.audit)), "\\.\n\n",
        f"SELECT pg_catalog.setval('public.requests_id_seq', {len(data.requests)}, true);\n\n",
        "ALTER TABLE ONLY public.agencies\n    ADD CONSTRAINT agencies_pkey PRIMARY KEY (code);\n\n",
        "ALTER TABLE ONLY public.requests\n    ADD CONSTRAINT requests_pkey PRIMARY KEY (id);\n\n",
        "ALTER TABLE ONLY public.requests\n    ADD CONSTRAINT requests_agency_code_fkey FOREIGN KEY (agency_code) "
        "REFERENCES public.agencies(code);\n\n",
        "--\n-- PostgreSQL database dump complete\n--\n\n",
    ]
    path.write_text("".join(parts), encoding="utf-8")
    return path
