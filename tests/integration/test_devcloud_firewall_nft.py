"""The nftables scripts of dev cloud hosts (controlplane/devcloud/firewall.py) through nft's own parser, as root in a
network namespace of their own (`unshare --net`): nothing on this machine's tables changes. Fast, and needs no dev
cloud, so it runs with the other tests, not the devcloud ones; the scripts' content is tested in
tests/unit/test_devcloud_firewall.py."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from typing import Any

from components import missing

from controlplane.devcloud.firewall import Group, NetworkState, Port, Rule, ruleset, unfiltered

WEB = Rule("ingress", "IPv4", "tcp", 80, 80, "0.0.0.0/0")
SERVER = "4f6c1d2e-5a01-4000-8000-000000000001"


def port(id: str = "p1", *groups: str, ips: tuple[str, ...] = ("10.78.0.5",), **fields: Any) -> Port:
    return Port(id=id, device_id=fields.pop("device_id", SERVER), fixed_ips=ips, security_groups=groups, **fields)


def test_nft_accepts_the_scripts() -> None:
    """nft's own parser (check mode, in a network namespace of its own) takes every kind of script we write."""
    if os.geteuid() != 0:
        missing("root", "checking scripts with nft needs root (a network namespace of its own)")
    for tool in ("nft", "unshare"):
        if shutil.which(tool) is None:
            missing(tool, f"{tool} is not on PATH")
    members = NetworkState(
        ports=(port("p1", "g"), port("p2", "g", ips=("10.78.0.6", "fd00::6"), allowed_address_pairs=("10.78.0.0/28",))),
        groups={"g": Group("g", (WEB, Rule("ingress", "IPv4", remote_group_id="g"),
                                 Rule("ingress", "IPv6", remote_group_id="g"),
                                 Rule("ingress", "IPv4", "icmp", 8, 0), Rule("ingress", "IPv6", "icmp", 128),
                                 Rule("ingress", "IPv4", "sctp", 5, 6), Rule("ingress", "IPv4", "udplite", 7, 7),
                                 Rule("ingress", "IPv4", "dccp", 8, 8), Rule("ingress", "IPv4", "vrrp"),
                                 Rule("egress", "IPv4"), Rule("egress", "IPv6", "udp", 53, 53, "2001:db8::/32"),
                                 Rule("ingress", "IPv4", remote_address_group_id="a")))},
        address_groups={"a": ("192.0.2.0/24", "192.0.2.7/32")})
    stateless = replace(members, groups={"g": replace(members.groups["g"], stateful=False)})
    for script in (ruleset(members.ports[0], members), ruleset(members.ports[1], members), ruleset(None, members),
                   unfiltered(), ruleset(port("p3"), members), ruleset(members.ports[0], stateless)):
        checked = subprocess.run(["unshare", "--net", "nft", "--check", "-f", "-"], input=script, text=True,
                                 capture_output=True, check=False)
        assert checked.returncode == 0, checked.stderr + script
