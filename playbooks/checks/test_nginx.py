"""Checks of the nginx role: package, service, port, configuration, site mode (static or proxy), health path."""

from __future__ import annotations

import re
from typing import Any

from conftest import http_get, is_listening

ROLE = "nginx"


def test_packages_are_installed(host: Any, role_vars: dict[str, Any]) -> None:
    for name in role_vars["nginx_packages"]:
        assert host.package(name).is_installed, name


def test_service_runs_and_starts_at_boot(host: Any, role_vars: dict[str, Any]) -> None:
    service = host.service("nginx")
    assert service.is_running
    assert service.is_enabled


def test_listens(host: Any, role_vars: dict[str, Any]) -> None:
    assert is_listening(host, int(role_vars["nginx_listen_port"]))


def test_configuration_is_valid_and_enables_the_site(host: Any, role_vars: dict[str, Any]) -> None:
    assert host.run("/usr/sbin/nginx -t -q").rc == 0
    site = role_vars["nginx_site_name"]
    enabled = host.file(f"/etc/nginx/sites-enabled/{site}.conf")
    assert enabled.is_symlink and enabled.linked_to == f"/etc/nginx/sites-available/{site}.conf"
    content = host.file(f"/etc/nginx/sites-available/{site}.conf").content_string
    if role_vars["nginx_upstreams"]:
        servers = [line.strip() for line in content.splitlines() if re.fullmatch(r"server [^{]+;", line.strip())]
        assert servers == [f"server {upstream};" for upstream in role_vars["nginx_upstreams"]]
        assert f"proxy_pass http://{site}_backend;" in content
    else:
        assert f"root {role_vars['nginx_root']};" in content
        assert "proxy_pass" not in content
    if role_vars["nginx_remove_default_site"]:
        assert not host.file("/etc/nginx/sites-enabled/default").exists


def test_health_path_and_front_page(host: Any, role_vars: dict[str, Any]) -> None:
    base = f"http://127.0.0.1:{role_vars['nginx_listen_port']}"
    status, body = http_get(host, base + role_vars["nginx_health_path"])
    assert (status, body.strip()) == (200, "ok")
    status, body = http_get(host, base + "/")
    if role_vars["nginx_upstreams"]:
        # Through the proxy: a backend answered (nginx itself says 502/504 when none does).
        assert 0 < status < 500, f"the front answered {status}: {body[:200]}"
