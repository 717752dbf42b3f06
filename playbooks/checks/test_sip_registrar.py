"""Checks of the sip_registrar role: Kamailio installed and running as its own user, UDP on the configured address
only (no TCP), its configuration, and its answers from the host itself: OPTIONS for the registrar 200, for a room
that is not registered 404, for another domain 403; its management socket lists the registrations."""

from __future__ import annotations

import shlex
import uuid
from typing import Any

import pytest
from conftest import ROLES_DIR

ROLE = "sip_registrar"
MODULES = ("kex", "sl", "tm", "pv", "maxfwd", "textops", "siputils", "xlog", "usrloc", "registrar", "ctl")
# The role's own verify script: one OPTIONS request, the status line of the final answer.
OPTIONS_SCRIPT = (ROLES_DIR / ROLE / "files" / "sip-options.py").read_text()


def default_ipv4(host: Any) -> str:
    """The host's default IPv4 address as Ansible finds it: the source address of its route towards 8.8.8.8 (a
    route lookup: nothing is sent)."""
    words = host.check_output("ip -4 -o route get 8.8.8.8").split()
    return str(words[words.index("src") + 1])


@pytest.fixture(scope="module")
def address(host: Any, role_vars: dict[str, Any]) -> str:
    """The listen address; a default that needs Ansible's facts is worked out on the host."""
    value = str(role_vars["sip_registrar_listen_address"])
    return default_ipv4(host) if "{{" in value else value


@pytest.fixture(scope="module")
def domain(role_vars: dict[str, Any], address: str) -> str:
    value = str(role_vars["sip_registrar_domain"])
    return address if "{{" in value else value


def options(host: Any, address: str, port: int, uri: str) -> tuple[int, str]:
    """Send one SIP OPTIONS for `uri` from the host itself: (script status, status line of the final answer)."""
    done = host.run(f"python3 -c {shlex.quote(OPTIONS_SCRIPT)} {shlex.quote(address)} {int(port)} {shlex.quote(uri)}")
    return done.rc, done.stdout.strip()


def test_packages_are_installed(host: Any, role_vars: dict[str, Any]) -> None:
    for name in role_vars["sip_registrar_packages"]:
        assert host.package(name).is_installed, name


def test_service_runs_as_kamailio_and_starts_at_boot(host: Any, role_vars: dict[str, Any]) -> None:
    service = host.service("kamailio")
    assert service.is_running
    assert service.is_enabled
    processes = host.process.filter(comm="kamailio")
    assert processes, "no kamailio process"
    assert {process.user for process in processes} == {"kamailio"}


def test_listens_on_udp_of_its_address_only(host: Any, role_vars: dict[str, Any], address: str) -> None:
    port = int(role_vars["sip_registrar_port"])
    assert host.socket(f"udp://{address}:{port}").is_listening
    assert not host.socket(f"udp://0.0.0.0:{port}").is_listening
    assert not host.socket(f"udp://:::{port}").is_listening
    # disable_tcp: nothing of Kamailio's on TCP at all.
    tcp = host.check_output("ss -H -l -t -n -p")
    assert '"kamailio"' not in tcp, tcp


def test_configuration(host: Any, role_vars: dict[str, Any], address: str, domain: str) -> None:
    assert host.run("/usr/sbin/kamailio -c -f /etc/kamailio/kamailio.cfg").rc == 0
    lines = [line.strip() for line in host.file("/etc/kamailio/kamailio.cfg").content_string.splitlines()]
    assert f"listen=udp:{address}:{role_vars['sip_registrar_port']}" in lines
    assert [line for line in lines if line.startswith("listen=")] == [
        f"listen=udp:{address}:{role_vars['sip_registrar_port']}"]
    assert "disable_tcp=yes" in lines
    assert f"children={role_vars['sip_registrar_children']}" in lines
    if domain != address:
        assert f'alias="{domain}"' in lines
    loaded = [line.split('"')[1].removesuffix(".so") for line in lines if line.startswith("loadmodule ")]
    assert sorted(loaded) == sorted(MODULES)
    for name in ("default_expires", "min_expires", "max_expires"):
        assert f'modparam("registrar", "{name}", {role_vars["sip_registrar_" + name]})' in lines
    startup = host.file("/etc/default/kamailio").content_string.splitlines()
    assert f"SHM_MEMORY={role_vars['sip_registrar_shm_memory']}" in startup
    assert f"PKG_MEMORY={role_vars['sip_registrar_pkg_memory']}" in startup


def test_answers_options_addressed_to_itself(host: Any, role_vars: dict[str, Any], address: str,
                                             domain: str) -> None:
    port = int(role_vars["sip_registrar_port"])
    for uri in (f"sip:{domain}", f"sip:{address}"):
        rc, status = options(host, address, port, uri)
        assert (rc, status) == (0, "SIP/2.0 200 OK"), (uri, status)


def test_a_room_that_is_not_registered_is_not_found(host: Any, role_vars: dict[str, Any], address: str,
                                                     domain: str) -> None:
    rc, status = options(host, address, int(role_vars["sip_registrar_port"]),
                         f"sip:no-such-room-{uuid.uuid4().hex[:8]}@{domain}")
    assert (rc, status) == (1, "SIP/2.0 404 Not Found")


def test_relays_for_no_other_domain(host: Any, role_vars: dict[str, Any], address: str) -> None:
    rc, status = options(host, address, int(role_vars["sip_registrar_port"]), "sip:someone@elsewhere.invalid")
    assert (rc, status) == (1, "SIP/2.0 403 Relaying Forbidden")


def test_management_socket_lists_the_registrations(host: Any, role_vars: dict[str, Any]) -> None:
    done = host.run("kamcmd ul.dump brief")
    assert done.rc == 0, done.stderr
    assert "location" in done.stdout
