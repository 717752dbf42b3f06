"""What the dev cloud's rehearsal estate is made of, as plain data and file contents (standard library only): the
two sample systems of an agency, the agency's onboarding, the job that configures the legacy side, the ready wave
file, and the artifacts (a WAR, a dataset with its plain pg_dump and its source manifest, method copy-text-md5/1).

Everything here is the same on every run, byte for byte: `controlplane devcloud estate up` (controlplane.devcloud.
estate) writes it, and the tests deploy and load the same artifacts (tests/artifacts.py imports them from here).
"""

from __future__ import annotations

import hashlib
import io
import json
import random
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

from controlplane.cloud.domain import free_default_cidr

KST = timezone(timedelta(hours=9))

# The estate's agency: a dedicated code, so that rehearsing never touches a real agency's tenancy, quota or systems.
# Nine letters: an agency code is 2-16 upper-case letters, digits or _ (auth) and starts with a letter (cloud).
AGENCY = "REHEARSAL"
AGENCY_NAME_KO = "이전 리허설 기관"
AGENCY_NAME_EN = "Migration rehearsal agency (dev cloud)"
# The estate's share of the dev cloud: its 3 legacy hosts and the 2 servers a wave of its systems makes, with room
# for a second wave made before the first is rolled back.
QUOTAS = {"instances": 8, "cores": 8, "ram_mb": 8192, "volumes": 2}
# SSH and the users' HTTP from this machine, the front to Tomcat, the application to PostgreSQL: from the agency's
# network and this machine (which holds the gateway address of every dev cloud network), all in 10/8.
INGRESS_PORTS = (22, 80, 8080, 5432)
INGRESS_FROM = "10.0.0.0/8"
FLAVOR = "small"
LEGACY_APP = "minwon on the legacy WebLogic"
NEW_APP = "minwon on the new Tomcat"
DATASET_ROWS = 1500
SOAK_HOURS = 2
ROLES = ("db", "app", "front")  # the estate's hosts: the legacy database, the legacy application server, the front


@dataclass(frozen=True)
class Names:
    """The names of one agency's estate (its systems, hosts, credential, wave), all made from the agency's code."""

    agency: str
    database: str = "minwon"  # the legacy database
    database_owner: str = "minwon_app"

    @property
    def slug(self) -> str:
        """The code as system codes and host names take it: lower case, '-' for '_'."""
        return self.agency.lower().replace("_", "-")

    @property
    def db_system(self) -> str:
        return f"{self.slug}-minwon-db"

    @property
    def app_system(self) -> str:
        return f"{self.slug}-minwon"

    @property
    def credential(self) -> str:
        return f"estate-{self.slug}"

    def server(self, role: str) -> str:
        return {"db": f"{self.slug}-legacy-db", "app": f"{self.slug}-legacy-was", "front": f"{self.slug}-front"}[role]

    def owner(self, role: str) -> str:
        """The cp_owner of an estate host: found again by the next `estate up`, deleted by `estate down`."""
        return f"estate/{self.agency}/{role}"

    def wave(self, number: int) -> str:
        return f"{self.slug}-{number}"


def role_of(owner: str | None, agency: str) -> str | None:
    """The estate role of a server from its cp_owner; None when the estate did not make it."""
    prefix = f"estate/{agency}/"
    return owner[len(prefix):] if owner and owner.startswith(prefix) else None


# --- the agency and its systems -----------------------------------------------------------------------------

def free_cidr(taken: Iterable[str]) -> str:
    """The first default agency network (10.81.N.0/24, as the cloud picks one) that overlaps none of `taken` (the
    other agencies' networks and the routes of this machine, where every dev cloud network has its gateway)."""
    cidr = free_default_cidr(taken)
    if cidr is None:
        raise ValueError("no free 10.81.N.0/24 is left for the estate's network")
    return cidr


def routed(routes: Iterable[Mapping[str, Any]], *, bridge_prefix: str) -> list[str]:
    """The networks of this machine's routes (`ip -j -4 route`) that a new network must not overlap: all but the
    default route and the dev cloud's abandoned bridges (`bridge_prefix`, no host up: link down), whose range the
    dev cloud frees when a new network's host needs it."""
    return [str(route["dst"]) for route in routes if route.get("dst") not in (None, "default")
            and not (str(route.get("dev", "")).startswith(bridge_prefix) and "linkdown" in route.get("flags", ()))]


def onboarding(public_key: str, cidr: str) -> dict[str, Any]:
    """The body of PUT /api/v1/cloud/agencies/{code}/onboarding for the estate's agency."""
    ingress = [{"protocol": "tcp", "port_min": port, "port_max": port, "remote_cidr": INGRESS_FROM}
               for port in INGRESS_PORTS] + [{"protocol": "icmp", "remote_cidr": INGRESS_FROM}]
    return {"quotas": dict(QUOTAS), "cidr": cidr, "ingress": ingress, "public_key": public_key}


def systems(names: Names) -> list[dict[str, Any]]:
    """The two systems, as an inventory file lists them: the petitions database (PostgreSQL 9.6 on RHEL 7: re-hosted
    onto PostgreSQL 15, its data moved) and the petitions application that calls it (WebLogic 12c on HP-UX: onto
    Tomcat 10.1 with a WAR). No maintenance window: an approved cutover runs at once."""
    def system(code: str, name_ko: str, name_en: str, components: list[tuple[str, str, str, str]],
               depends_on: list[str], data_gb: int, notes: str) -> dict[str, Any]:
        return {"code": code, "agency": names.agency, "name_ko": name_ko, "name_en": name_en, "criticality": "medium",
                "vcpus": 1, "ram_mb": 1024, "disk_gb": 10, "data_gb": data_gb,
                "components": [{"kind": k, "vendor": v, "product": p, "version": ver} for k, v, p, ver in components],
                "depends_on": depends_on, "notes": notes}

    return [
        system(names.db_system, "민원 DB", "Civil petitions database",
               [("os", "Red Hat", "RHEL", "7"), ("db", "PostgreSQL", "PostgreSQL", "9.6")], [], 1,
               "Rehearsal estate: its legacy host runs Debian's PostgreSQL 15 in place of 9.6 on RHEL."),
        system(names.app_system, "민원 처리", "Civil petitions application",
               [("os", "HPE", "HP-UX", "11i v3"), ("was", "Oracle", "WebLogic Server", "12c")], [names.db_system], 0,
               "Rehearsal estate: its legacy host runs Tomcat in place of WebLogic, behind the users' nginx front."),
    ]


# --- the files ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Files:
    """The estate's files in the artifacts directory (the only place jobs copy from)."""

    directory: Path

    @property
    def legacy_war(self) -> Path:
        return self.directory / "minwon-legacy.war"  # what the legacy application server runs

    @property
    def new_war(self) -> Path:
        return self.directory / "minwon.war"  # what the new Tomcat gets

    @property
    def seed_dump(self) -> Path:
        return self.directory / "minwon-legacy-data.sql"  # the data the legacy database is filled with

    @property
    def dump(self) -> Path:
        return self.directory / "minwon-db.sql"  # the plain pg_dump taken from the legacy database

    @property
    def manifest(self) -> Path:
        return self.directory / "minwon-db.manifest.json"  # its row counts and checksums

    def made(self) -> dict[Path, bytes]:
        """Every file the estate makes itself (all but the dump, which is taken from the legacy database)."""
        dataset = make_dataset(rows=DATASET_ROWS)
        return {self.legacy_war: war_bytes(LEGACY_APP), self.new_war: war_bytes(NEW_APP),
                self.seed_dump: dump_text(dataset).encode(),
                self.manifest: (json.dumps(dataset.manifest(), indent=2, sort_keys=True) + "\n").encode()}


def legacy_job(names: Names, addresses: Mapping[str, str], files: Files, *, cidr: str, credential: str,
               roles: Iterable[str]) -> dict[str, Any]:
    """The job (the body of POST /api/v1/jobs, without secrets) that sets up the legacy side on the hosts of `roles`:
    the database (PostgreSQL with its data loaded and proven against the manifest), the application server (Tomcat
    standing in for WebLogic, the legacy WAR at /) and the users' nginx front pointing at it. It needs the secret
    postgresql_db_owner_password when the database is among them."""
    wanted = [role for role in ROLES if role in set(roles)]
    hosts: dict[str, dict[str, Any]] = {
        "db": {"groups": ["postgresql", "data_migration"], "vars": {
            "postgresql_db_name": names.database, "postgresql_db_owner": names.database_owner,
            "postgresql_listen_addresses": ["*"],
            "postgresql_hba_entries": [
                {"type": "host", "database": names.database, "user": names.database_owner, "address": cidr,
                 "method": "scram-sha-256"},
                {"type": "host", "database": "all", "user": "all", "address": "127.0.0.1/32",
                 "method": "scram-sha-256"}],
            "data_migration_db_name": names.database, "data_migration_db_owner": names.database_owner,
            "data_migration_format": "sql", "data_migration_dump_src": str(files.seed_dump),
            "data_migration_manifest_src": str(files.manifest),
            "data_migration_replace": True}},  # legacy data that drifted (a rehearsal wrote to it) is put back
        "app": {"groups": ["tomcat", "app_deploy"], "vars": {
            "tomcat_heap_min": "64m", "tomcat_heap_max": "256m", "app_deploy_kind": "war", "app_deploy_name": "ROOT",
            "app_deploy_artifact_src": str(files.legacy_war),
            "app_deploy_artifact_checksum": sha256_of_bytes(war_bytes(LEGACY_APP)),
            "app_deploy_health_url": "http://127.0.0.1:8080/",
            "app_deploy_health_content": LEGACY_APP}},
        "front": {"groups": ["nginx"], "vars": {"nginx_upstreams": [legacy_upstream(addresses)]}},
    }
    steps = [step for step in ("postgresql", "data_migration", "tomcat", "nginx", "app_deploy")
             if any(step in hosts[role]["groups"] for role in wanted)]
    return {"playbook": "migrate_system.yml", "credential": credential, "agency": names.agency,
            "hosts": [{"name": names.server(role), "address": addresses[role], **hosts[role]} for role in wanted],
            "extravars": {"migration_system": f"{names.slug}-legacy", "migration_steps": steps},
            "verify": False}


def legacy_upstream(addresses: Mapping[str, str]) -> str:
    return f"{addresses['app']}:8080"


# --- the wave file ------------------------------------------------------------------------------------------

def _v(value: Any) -> str:
    """A YAML scalar or flow sequence (JSON is valid YAML)."""
    return json.dumps(value, ensure_ascii=False)


def wave_file(names: Names, *, wave: str, addresses: Mapping[str, str], files: Files, checksum: str,
              path: Path) -> str:
    """The body of POST /api/v1/waves for the estate's two systems, as YAML with a comment on every input."""
    front, upstream = addresses["front"], legacy_upstream(addresses)
    return f"""\
# A ready wave for the rehearsal estate of {names.agency} on the dev cloud, written by
# `controlplane devcloud estate up`: the body of POST /api/v1/waves. Make the wave with
#   controlplane waves create {path}
# Once a wave is made from it, the next `estate up` writes it again with the next free name.
# Every input is described in the README, "Wave input reference".

# The wave's name: unique among all waves.
name: {_v(wave)}
# Systems of the inventory (controlplane systems list --agency {names.agency}), migrated together. A system runs
# its cutover after those it calls: {names.app_system} calls {names.db_system}, whose cutover comes first.
systems: {_v([names.db_system, names.app_system])}
# The SSH credential every job of the wave logs in with (controlplane credentials list). The agency's new servers
# get the key of its onboarding spec: this credential's key, which also logs in to the front.
credential: {_v(names.credential)}
# Hours a cut-over system keeps its legacy side: until then `controlplane waves rollback` puts its users back on
# it; then it is retired (marked migrated). Default CP_MIGRATION_SOAK_HOURS (24); 0 retires at once.
soak_hours: {SOAK_HOURS}
# What each system's steps need, by system code.
inputs:
  {names.db_system}:
    # Where its data comes from: `format: sql` is a plain pg_dump (--no-owner --no-privileges), here taken from
    # the legacy database ({addresses['db']}); the manifest holds the source's row counts and checksums
    # (copy-text-md5/1) that the load into the new PostgreSQL is proven against. Files are read from
    # CP_ARTIFACTS_DIR only.
    data:
      format: "sql"
      dump_src: {_v(str(files.dump))}
      manifest_src: {_v(str(files.manifest))}
  {names.app_system}:
    # The users' nginx front that the cutover switches to the new Tomcat: an existing host that the credential's
    # key logs in to as root, on a network that reaches the new servers (here the agency's own network).
    front:
      name: {_v(names.server("front"))}
      address: {_v(front)}
    # Where the front sends the users today, and again after a rollback: the legacy application server.
    legacy_upstreams: {_v([upstream])}
    # What the new Tomcat deploys: a WAR (its sha256 is checked before it is copied); one named ROOT is served at
    # /. The deploy waits until the page answers with health_content.
    artifact:
      kind: "war"
      name: "ROOT"
      src: {_v(str(files.new_war))}
      checksum: {_v(checksum)}
      health_content: {_v(NEW_APP)}
"""


# --- artifacts ----------------------------------------------------------------------------------------------

def sha256_of_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def war_bytes(text: str) -> bytes:
    """A minimal web application archive (index.html, WEB-INF/web.xml); the same bytes on every run."""
    entries = {
        "META-INF/MANIFEST.MF": "Manifest-Version: 1.0\r\n\r\n",
        "WEB-INF/web.xml": ('<?xml version="1.0" encoding="UTF-8"?>\n'
                            '<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">\n'
                            "  <display-name>minwon</display-name>\n</web-app>\n"),
        "index.html": f"<!doctype html><title>minwon</title><p>{text}</p>\n",
    }
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as war:
        for name, content in entries.items():
            war.writestr(zipfile.ZipInfo(name, date_time=(2014, 7, 1, 0, 0, 0)), content)
    return buffer.getvalue()


def make_war(path: Path, text: str) -> Path:
    path.write_bytes(war_bytes(text))
    return path


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
    digest = hashlib.md5()  # noqa: S324 - the manifest method's checksum, not a security measure
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
    rng = random.Random(seed)  # noqa: S311 - sample data, the same on every run
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
    path.write_text(dump_text(data), encoding="utf-8")
    return path


def dump_text(data: Dataset) -> str:
    """A plain pg_dump (--no-owner --no-privileges) of the dataset, as PostgreSQL 15's pg_dump writes one.

    Rows are shuffled, numerics unpadded and timestamps in KST: the checksum is over what the server stores."""
    rng = random.Random(7)  # noqa: S311 - a fixed shuffle

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
    return "".join(parts)
