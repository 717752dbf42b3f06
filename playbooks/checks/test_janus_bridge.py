"""Checks of the janus_bridge role: Janus installed and running as its own user, its HTTP and admin APIs on the
configured address only, its configuration (the admin secret readable by root and Janus's group only, never Janus's
well-known default; media on that address and port range; the unused transports and plugins off; no stock rooms),
and its answers from the host itself: `info`, the admin API refusing a missing or wrong secret (403) and taking the
configured one, an empty videoroom.

The admin secret is not given to the checks: the one check that uses it reads it on the host and prints only the
admin API's verdict, so it never reaches the check's output or evidence."""

from __future__ import annotations

import json
import shlex
from typing import Any

import pytest

ROLE = "janus_bridge"
CONFIG = "/etc/janus/janus.jcfg"

# Runs on the host: Janus's HTTP API (info, the videoroom's room list) and admin API. Prints JSON without secrets.
_JANUS = r'''
import json, re, sys, urllib.request
mode, base, admin = sys.argv[1:4]

def post(url, body):
    request = urllib.request.Request(url, data=json.dumps({**body, "transaction": "check"}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)

def code(reply):
    return (reply.get("error") or {}).get("code")

if mode == "info":
    print(json.dumps(post(base, {"janus": "info"})))
elif mode == "admin":
    match = re.search(r'^\s*admin_secret\s*=\s*"((?:[^"\\]|\\.)*)"\s*$', open(sys.argv[4]).read(), re.M)
    secret = re.sub(r"\\(.)", r"\1", match.group(1)) if match else None
    verdict = post(admin, {"janus": "list_sessions", "admin_secret": secret}) if secret else {}
    print(json.dumps({
        "missing": code(post(admin, {"janus": "list_sessions"})),
        "wrong": code(post(admin, {"janus": "list_sessions", "admin_secret": "not-the-admin-secret"})),
        "configured": verdict.get("janus", "no admin_secret in the configuration"),
        "configured_error": code(verdict)}))
elif mode == "rooms":
    session = post(base, {"janus": "create"})["data"]["id"]
    try:
        handle = post(f"{base}/{session}", {"janus": "attach", "plugin": "janus.plugin.videoroom"})["data"]["id"]
        reply = post(f"{base}/{session}/{handle}", {"janus": "message", "body": {"request": "list"}})
        print(json.dumps(reply["plugindata"]["data"]))
    finally:
        post(f"{base}/{session}", {"janus": "destroy"})
'''


def default_ipv4(host: Any) -> str:
    """The host's default IPv4 address as Ansible finds it: the source address of its route towards 8.8.8.8 (a
    route lookup: nothing is sent)."""
    words = host.check_output("ip -4 -o route get 8.8.8.8").split()
    return str(words[words.index("src") + 1])


@pytest.fixture(scope="module")
def address(host: Any, role_vars: dict[str, Any]) -> str:
    """The listen address; a default that needs Ansible's facts is worked out on the host."""
    value = str(role_vars["janus_bridge_listen_address"])
    return default_ipv4(host) if "{{" in value else value


def janus(host: Any, role_vars: dict[str, Any], address: str, mode: str) -> Any:
    base = f"http://{address}:{role_vars['janus_bridge_http_port']}/janus"
    admin = f"http://{address}:{role_vars['janus_bridge_admin_port']}/admin"
    argv = " ".join(shlex.quote(arg) for arg in (mode, base, admin, CONFIG))
    return json.loads(host.check_output(f"python3 -c {shlex.quote(_JANUS)} {argv}"))


def settings(text: str) -> dict[str, str]:
    """`name = value` lines of a .jcfg file (the last one of a name wins; quotes kept)."""
    found = {}
    for line in text.splitlines():
        name, equals, value = line.strip().partition(" = ")
        if equals and not name.startswith("#"):
            found[name] = value.strip()
    return found


def library_names(libraries: list[str], kind: str) -> set[str]:
    """libjanus_streaming.so -> janus.plugin.streaming (kind "plugin") or janus.transport.* ("transport")."""
    return {f"janus.{kind}.{name.removeprefix('libjanus_').removesuffix('.so')}" for name in libraries}


def test_packages_are_installed(host: Any, role_vars: dict[str, Any]) -> None:
    for name in role_vars["janus_bridge_packages"]:
        assert host.package(name).is_installed, name


def test_service_runs_as_its_own_user_and_starts_at_boot(host: Any, role_vars: dict[str, Any]) -> None:
    service = host.service("janus")
    assert service.is_running
    assert service.is_enabled
    processes = host.process.filter(comm="janus")
    assert processes, "no janus process"
    assert {process.user for process in processes} == {role_vars["janus_bridge_user"]}


def test_apis_listen_on_its_address_only(host: Any, role_vars: dict[str, Any], address: str) -> None:
    listening = set()
    for line in host.check_output("ss -H -l -t -n -p").splitlines():
        if '"janus"' in line:
            listening.add(line.split()[3])
    assert listening == {f"{address}:{role_vars['janus_bridge_http_port']}",
                         f"{address}:{role_vars['janus_bridge_admin_port']}"}


def test_the_admin_secret_is_set_and_readable_by_janus_only(host: Any, role_vars: dict[str, Any]) -> None:
    config = host.file(CONFIG)
    assert (config.user, config.group, config.mode) == ("root", role_vars["janus_bridge_group"], 0o640)
    # On the host: the secret itself never comes here.
    assert host.run(f"grep -Eq '^[[:space:]]*admin_secret = \".{{16,}}\"[[:space:]]*$' {CONFIG}").rc == 0
    assert host.run(f"grep -q janusoverlord {CONFIG}").rc == 1, "Janus's well-known default admin secret"


def test_core_configuration(host: Any, role_vars: dict[str, Any], address: str) -> None:
    found = settings(host.check_output(f"grep -v admin_secret {CONFIG}"))
    timeout = int(found["session_timeout"])
    assert timeout == role_vars["janus_bridge_session_timeout"] and timeout > 30
    assert found["rtp_port_range"] == f'"{role_vars["janus_bridge_rtp_port_range"]}"'
    assert found["ice_enforce_list"] == f'"{address}"'
    assert found["interface"] == f'"{address}"'
    # Twice `disable = ...`: in the plugins group and in the transports group.
    lines = host.check_output(f"grep -E '^[[:space:]]*disable = ' {CONFIG}").splitlines()
    assert sorted(line.strip() for line in lines) == sorted([
        f'disable = "{",".join(role_vars["janus_bridge_disabled_plugins"])}"',
        f'disable = "{",".join(role_vars["janus_bridge_disabled_transports"])}"'])


def test_http_transport_configuration(host: Any, role_vars: dict[str, Any], address: str) -> None:
    found = settings(host.file("/etc/janus/janus.transport.http.jcfg").content_string)
    assert (found["http"], found["ip"], found["port"]) == (
        "true", f'"{address}"', str(role_vars["janus_bridge_http_port"]))
    assert (found["admin_http"], found["admin_ip"], found["admin_port"]) == (
        "true", f'"{address}"', str(role_vars["janus_bridge_admin_port"]))
    assert (found["https"], found["admin_https"]) == ("false", "false")


def test_videoroom_configuration_has_no_rooms_and_no_admin_key(host: Any, role_vars: dict[str, Any]) -> None:
    text = host.file("/etc/janus/janus.plugin.videoroom.jcfg").content_string
    content = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
    assert content == ["general: {}"]


def test_http_api_answers_info(host: Any, role_vars: dict[str, Any], address: str) -> None:
    info = janus(host, role_vars, address, "info")
    assert info["janus"] == "server_info"
    assert info["local-ip"] == address
    assert info["session-timeout"] == role_vars["janus_bridge_session_timeout"]
    assert set(info["transports"]) == {"janus.transport.http"}
    assert "janus.plugin.videoroom" in info["plugins"]
    assert not set(info["plugins"]) & library_names(role_vars["janus_bridge_disabled_plugins"], "plugin")
    assert not set(info["transports"]) & library_names(role_vars["janus_bridge_disabled_transports"], "transport")


def test_admin_api_takes_the_configured_secret_only(host: Any, role_vars: dict[str, Any], address: str) -> None:
    verdict = janus(host, role_vars, address, "admin")
    assert verdict == {"missing": 403, "wrong": 403, "configured": "success", "configured_error": None}


def test_videoroom_has_no_rooms(host: Any, role_vars: dict[str, Any], address: str) -> None:
    data = janus(host, role_vars, address, "rooms")
    assert data["videoroom"] == "success"
    assert data["list"] == [], [room.get("room") for room in data["list"]]
