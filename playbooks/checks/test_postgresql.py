"""Checks of the postgresql role: package, cluster running, listeners, configuration, database and owner."""

from __future__ import annotations

from typing import Any

from conftest import is_listening, literal, psql

ROLE = "postgresql"


def test_packages_are_installed(host: Any, role_vars: dict[str, Any]) -> None:
    for name in role_vars["postgresql_packages"]:
        assert host.package(name).is_installed, name


def test_cluster_runs_and_starts_at_boot(host: Any, role_vars: dict[str, Any]) -> None:
    assert host.service(role_vars["postgresql_service"]).is_running
    assert host.service("postgresql").is_enabled


def test_listens_on_the_configured_addresses(host: Any, role_vars: dict[str, Any]) -> None:
    port = int(role_vars["postgresql_port"])
    for address in role_vars["postgresql_listen_addresses"]:
        assert is_listening(host, port, address), f"{address}:{port}"
    assert psql(host, "SHOW port", port=port) == str(port)
    assert psql(host, "SHOW listen_addresses", port=port) == ",".join(role_vars["postgresql_listen_addresses"])


def test_configuration_files(host: Any, role_vars: dict[str, Any]) -> None:
    config_dir = role_vars["postgresql_config_dir"]
    conf = host.file(f"{config_dir}/conf.d/50-controlplane.conf")
    assert conf.user == "postgres"
    assert f"port = {role_vars['postgresql_port']}" in conf.content_string
    hba = host.file(f"{config_dir}/pg_hba.conf")
    assert hba.user == "postgres" and hba.mode == 0o640
    lines = [line.split() for line in hba.content_string.splitlines() if line.strip() and not line.startswith("#")]
    assert lines[0] == ["local", "all", "postgres", "peer"]
    for entry in role_vars["postgresql_hba_entries"]:
        fields = [entry["type"], entry["database"], entry["user"], *([] if entry["type"] == "local" else
                                                                       [entry["address"]]), entry["method"]]
        assert fields in lines, fields
    for name, value in role_vars["postgresql_settings"].items():
        assert psql(host, f"SHOW {name}", port=int(role_vars["postgresql_port"])) == str(value), name
    errors = psql(host, "SELECT count(*) FROM pg_hba_file_rules WHERE error IS NOT NULL",
                  port=int(role_vars["postgresql_port"]))
    assert errors == "0"


def test_database_and_its_owner(host: Any, role_vars: dict[str, Any]) -> None:
    name = role_vars["postgresql_db_name"]
    if not name:
        return
    port = int(role_vars["postgresql_port"])
    row = psql(host, "SELECT pg_get_userbyid(datdba), pg_encoding_to_char(encoding), datcollate FROM pg_database "  # noqa: S608
                     f"WHERE datname = {literal(name)}", port=port)
    assert row.split("|") == [role_vars["postgresql_db_owner"], role_vars["postgresql_db_encoding"],
                              role_vars["postgresql_db_locale"]]
    owner = psql(host, "SELECT rolcanlogin, rolsuper, left(rolpassword, 13) FROM pg_authid "  # noqa: S608
                       f"WHERE rolname = {literal(role_vars['postgresql_db_owner'])}", port=port)
    assert owner == "t|f|SCRAM-SHA-256"
