"""Checks of the tomcat role: package, service, connector port, server.xml, heap, health page."""

from __future__ import annotations

import re
from typing import Any

from conftest import http_get, is_listening

ROLE = "tomcat"
_UNITS = {"k": 1 / 1024, "m": 1, "g": 1024, "": 1 / (1024 * 1024)}


def _megabytes(size: str) -> float:
    number, unit = re.fullmatch(r"([0-9]+)([kKmMgG]?)", size).groups()  # type: ignore[union-attr]
    return int(number) * _UNITS[unit.lower()]


def test_packages_are_installed(host: Any, role_vars: dict[str, Any]) -> None:
    for name in role_vars["tomcat_packages"]:
        assert host.package(name).is_installed, name


def test_service_runs_and_starts_at_boot(host: Any, role_vars: dict[str, Any]) -> None:
    service = host.service(role_vars["tomcat_service"])
    assert service.is_running
    assert service.is_enabled


def test_connector_listens(host: Any, role_vars: dict[str, Any]) -> None:
    assert is_listening(host, int(role_vars["tomcat_http_port"]), role_vars["tomcat_http_address"])


def test_server_xml(host: Any, role_vars: dict[str, Any]) -> None:
    server_xml = host.file(f"{role_vars['tomcat_config_dir']}/server.xml")
    assert server_xml.group == role_vars["tomcat_group"] and server_xml.mode == 0o640
    content = server_xml.content_string
    assert f'<Connector port="{role_vars["tomcat_http_port"]}" protocol="HTTP/1.1"' in content
    assert f'<Server port="{role_vars["tomcat_shutdown_port"]}"' in content
    assert f'maxThreads="{role_vars["tomcat_max_threads"]}"' in content


def test_jvm_runs_with_the_configured_heap(host: Any, role_vars: dict[str, Any]) -> None:
    heap = f"-Xmx{role_vars['tomcat_heap_max']}"
    assert heap in host.file(f"/etc/default/{role_vars['tomcat_service']}").content_string
    java = host.process.filter(user=role_vars["tomcat_user"], comm="java")
    assert java, "no java process of the tomcat user"
    assert any(heap in process.args.split() for process in java), "the running JVM lacks " + heap


def test_health_page(host: Any, role_vars: dict[str, Any]) -> None:
    context = role_vars["tomcat_health_context"]
    if not context:
        return
    status, body = http_get(host, f"http://127.0.0.1:{role_vars['tomcat_http_port']}/{context}/")
    assert status == 200, body[:200]
    report = dict(line.split("=", 1) for line in body.splitlines() if "=" in line)
    assert report["status"] == "UP"
    # The JVM reports a little less than -Xmx (one survivor space), never more.
    max_heap = _megabytes(role_vars["tomcat_heap_max"])
    assert 0.8 * max_heap <= int(report["max_heap_mb"]) <= max_heap
