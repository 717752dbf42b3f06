"""Checks of the base role: packages, services, SSH hardening, time, users, node exporter."""

from __future__ import annotations

from typing import Any

from conftest import http_get, is_listening

ROLE = "base"


def test_packages_are_installed(host: Any, role_vars: dict[str, Any]) -> None:
    missing = [name for name in role_vars["base_packages"] + role_vars["base_extra_packages"]
               if not host.package(name).is_installed]
    assert not missing, f"packages not installed: {missing}"


def test_services_run_and_start_at_boot(host: Any, role_vars: dict[str, Any]) -> None:
    for name in ("chrony", "ssh", "prometheus-node-exporter"):
        service = host.service(name)
        assert service.is_running, f"{name} is not running"
        assert service.is_enabled, f"{name} is not enabled"


def test_node_exporter_listens_and_serves_metrics(host: Any, role_vars: dict[str, Any]) -> None:
    port = int(role_vars["base_node_exporter_port"])
    assert is_listening(host, port, role_vars["base_node_exporter_listen_address"])
    status, body = http_get(host, f"http://127.0.0.1:{port}/metrics")
    assert status == 200
    assert "node_exporter_build_info" in body


def test_time_zone(host: Any, role_vars: dict[str, Any]) -> None:
    zone = role_vars["base_timezone"]
    assert host.file("/etc/localtime").linked_to == f"/usr/share/zoneinfo/{zone}"
    assert host.file("/etc/timezone").content_string.strip() == zone


def test_chrony_follows_the_configured_servers(host: Any, role_vars: dict[str, Any]) -> None:
    config = host.file("/etc/chrony/chrony.conf").content_string
    for server in role_vars["base_chrony_servers"]:
        assert f"server {server} iburst" in config
    options = host.file("/etc/default/chrony").content_string
    in_container = host.run("systemd-detect-virt --container").rc == 0
    # A container shares its host's clock: chrony follows the servers there without setting the clock.
    assert ("-x" in options.split('DAEMON_OPTS="', 1)[1]) == in_container
    assert host.run("chronyc -n tracking").rc == 0


def test_ssh_server_takes_keys_only(host: Any, role_vars: dict[str, Any]) -> None:
    effective = dict(line.split(" ", 1) for line in host.check_output("/usr/sbin/sshd -T").splitlines() if " " in line)
    root_login = role_vars["base_sshd_permit_root_login"]
    assert effective["permitrootlogin"] == ("without-password" if root_login == "prohibit-password" else root_login)
    assert effective["port"] == str(role_vars["base_sshd_port"])
    options = {**role_vars["base_sshd_options"], **role_vars["base_sshd_extra_options"]}
    for option, value in options.items():
        assert effective[option.lower()] == str(value).lower(), option
    assert effective["passwordauthentication"] == "no"
    drop_in = host.file("/etc/ssh/sshd_config.d/00-hardening.conf")
    assert drop_in.user == "root" and drop_in.mode == 0o644
    assert "PasswordAuthentication no" in drop_in.content_string


def test_groups_and_users(host: Any, role_vars: dict[str, Any]) -> None:
    for group in role_vars["base_groups"]:
        present = group.get("state", "present") == "present"
        assert host.group(group["name"]).exists == present, group["name"]
        if present and "gid" in group:
            assert host.group(group["name"]).gid == int(group["gid"])
    for user in role_vars["base_users"]:
        account = host.user(user["name"])
        if user.get("state", "present") == "absent":
            assert not account.exists, user["name"]
            continue
        assert account.exists, user["name"]
        assert account.shell == user.get("shell", "/bin/bash")
        assert set(user.get("groups", [])) <= set(account.groups), user["name"]
        keys = host.file(f"{account.home}/.ssh/authorized_keys")
        wanted = [key.strip() for key in user.get("authorized_keys", [])]
        if wanted:
            assert [line for line in keys.content_string.splitlines() if line.strip()] == wanted
            assert keys.user == user["name"] and keys.mode == 0o600
        sudoers = host.file(f"/etc/sudoers.d/90-base-{user['name']}")
        assert sudoers.exists == bool(user.get("sudo", False)), user["name"]
