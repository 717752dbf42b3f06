"""The admin project's `default` security group, opened the way an operator of a small cloud would open it.

Neutron's default group admits ingress only from its own members. The dev cloud enforces security groups, and its
users (the tests, a developer's openstacksdk) boot servers in the admin project with that group and reach them
from this machine: so `devcloud up` adds SSH (tcp 22), HTTP (tcp 80) and ICMP from anywhere (IPv4) to it.
Everything else still needs a rule. Through the Keystone and Neutron REST APIs with the standard library: the
control plane talks to clouds through controlplane/cloud/ only, and this is the launcher's own bootstrap.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

from controlplane.devcloud.processes import DevCloudError

# (protocol, port_range_min, port_range_max), each from 0.0.0.0/0.
INGRESS = (("tcp", 22, 22), ("tcp", 80, 80), ("icmp", None, None))
ANYWHERE = "0.0.0.0/0"


def wanted_rules(group_id: str) -> list[dict[str, Any]]:
    return [{"security_group_id": group_id, "direction": "ingress", "ethertype": "IPv4", "protocol": protocol,
             "port_range_min": low, "port_range_max": high, "remote_ip_prefix": ANYWHERE}
            for protocol, low, high in INGRESS]


def _key(rule: Mapping[str, Any]) -> tuple[Any, ...]:
    return (rule["direction"], rule["ethertype"], rule.get("protocol"), rule.get("port_range_min"),
            rule.get("port_range_max"), rule.get("remote_ip_prefix") or ANYWHERE, rule.get("remote_group_id"))


def missing_rules(group: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The wanted rules the group lacks (pure)."""
    present = {_key(rule) for rule in group.get("security_group_rules") or ()}
    return [rule for rule in wanted_rules(group["id"]) if _key(rule) not in present]


def _request(method: str, url: str, body: Any = None, token: str | None = None) -> tuple[Any, Mapping[str, str]]:
    headers = {"Content-Type": "application/json", "Accept": "application/json"} | (
        {"X-Auth-Token": token} if token else {})
    data = None if body is None else json.dumps(body).encode()
    # Only this dev cloud's http://127.0.0.1 URLs get here.
    request = urllib.request.Request(url, method=method, data=data, headers=headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310
            data = response.read()
            return (json.loads(data) if data else None), dict(response.headers)
    except OSError as exc:  # URLError and HTTPError included
        detail = exc.read().decode(errors="replace")[-300:] if isinstance(exc, urllib.error.HTTPError) else ""
        raise DevCloudError(f"{method} {url} failed: {exc} {detail}".strip()) from exc


def seed(keystone_url: str, neutron_url: str, admin_password: str) -> list[str]:
    """Add what the admin project's default group lacks; returns the rules added, described."""
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": admin_password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    body, headers = _request("POST", f"{keystone_url}/v3/auth/tokens", auth)
    token, project_id = headers["X-Subject-Token"], body["token"]["project"]["id"]
    # Listing a project's groups makes Neutron create its default group if it has none yet.
    listed, _ = _request("GET", f"{neutron_url}/v2.0/security-groups?project_id={project_id}&name=default",
                         token=token)
    groups: Iterable[Mapping[str, Any]] = listed["security_groups"]
    group = next(iter(groups), None)
    if group is None:
        raise DevCloudError("Neutron has no default security group for the admin project")
    added = []
    for rule in missing_rules(group):
        _request("POST", f"{neutron_url}/v2.0/security-group-rules", {"security_group_rule": rule}, token=token)
        ports = "" if rule["port_range_min"] is None else f" {rule['port_range_min']}"
        added.append(f"{rule['protocol']}{ports} from {ANYWHERE}")
    return added
