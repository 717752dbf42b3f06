"""Security groups -> the nftables script of a dev cloud host (controlplane/devcloud/firewall.py), and the sync's
bookkeeping: a host's table is rewritten only when its script (or what the kernel holds) changed. nft's own parser
checks the scripts in tests/integration/test_devcloud_firewall_nft.py (it needs root)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from controlplane.devcloud import admin_group, firewall
from controlplane.devcloud.firewall import Group, NetworkState, Port, Rule, rule_line, ruleset, unfiltered
from controlplane.devcloud.firewall_sync import FirewallSync, port_of
from controlplane.devcloud.hosts import HostInfo, host_name_for

WEB = Rule("ingress", "IPv4", "tcp", 80, 80, "0.0.0.0/0")
SERVER = "4f6c1d2e-5a01-4000-8000-000000000001"
OTHER = "9b2e7c10-77d4-4000-8000-000000000002"


def port(id: str = "p1", *groups: str, ips: tuple[str, ...] = ("10.78.0.5",), **fields: Any) -> Port:
    return Port(id=id, device_id=fields.pop("device_id", SERVER), fixed_ips=ips, security_groups=groups, **fields)


def chain(script: str, name: str) -> list[str]:
    """The rules of one chain of a script, stripped."""
    lines = script.splitlines()
    start = lines.index(f"\tchain {name} {{") + 1
    end = lines.index("\t}", start)
    return [line.strip() for line in lines[start:end]]


def line(rule: Rule, state: NetworkState | None = None) -> str | None:
    return rule_line(rule, state or NetworkState())


# -- one rule -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("rule", "expected"), [
    (WEB, "meta nfproto ipv4 tcp dport 80 accept"),
    (Rule("ingress", "IPv4", "tcp", 8000, 8100, "10.0.0.0/8"),
     "meta nfproto ipv4 ip saddr 10.0.0.0/8 tcp dport 8000-8100 accept"),
    (Rule("egress", "IPv4", "udp", 53, 53, "10.1.2.3/32"), "meta nfproto ipv4 ip daddr 10.1.2.3 udp dport 53 accept"),
    (Rule("ingress", "IPv4", "tcp"), "meta nfproto ipv4 meta l4proto tcp accept"),
    (Rule("ingress", "IPv4", "6", 22, 22), "meta nfproto ipv4 tcp dport 22 accept"),  # protocols by number too
    (Rule("ingress", "IPv4", "sctp", 9, None), "meta nfproto ipv4 sctp dport 9 accept"),
    (Rule("ingress", "IPv4", "udp", None, 99), "meta nfproto ipv4 meta l4proto udp accept"),
    (Rule("ingress", "IPv4", "icmp"), "meta nfproto ipv4 meta l4proto icmp accept"),
    (Rule("ingress", "IPv4", "icmp", 8, 0), "meta nfproto ipv4 icmp type 8 icmp code 0 accept"),
    (Rule("ingress", "IPv4", "icmp", 8), "meta nfproto ipv4 icmp type 8 accept"),
    # "icmp" in an IPv6 rule is ICMPv6, as Neutron reads it.
    (Rule("ingress", "IPv6", "icmp", 128), "meta nfproto ipv6 icmpv6 type 128 accept"),
    (Rule("ingress", "IPv6", "ipv6-icmp", None, None, "2001:db8::/32"),
     "meta nfproto ipv6 ip6 saddr 2001:db8::/32 meta l4proto ipv6-icmp accept"),
    (Rule("ingress", "IPv4", "gre"), "meta nfproto ipv4 meta l4proto 47 accept"),
    (Rule("ingress", "IPv4", "112"), "meta nfproto ipv4 meta l4proto 112 accept"),
    (Rule("ingress", "IPv4"), "meta nfproto ipv4 accept"),  # any protocol from anywhere
    (Rule("ingress", "IPv4", "any"), "meta nfproto ipv4 accept"),
    (Rule("ingress", "IPv4", "0"), "meta nfproto ipv4 accept"),  # 0 is "any" in Neutron's drivers
    (Rule("egress", "IPv6"), "meta nfproto ipv6 accept"),
])
def test_a_rule_becomes_one_accepting_nft_rule(rule: Rule, expected: str) -> None:
    assert line(rule) == expected


@pytest.mark.parametrize("rule", [
    Rule("ingress", "IPv4", "no-such-protocol"),
    Rule("ingress", "IPv4", "300"),
    Rule("ingress", "IPv4", "tcp", 22, 22, "2001:db8::/32"),  # a prefix of the other IP version
])
def test_a_rule_that_can_match_nothing_is_left_out(rule: Rule) -> None:
    assert line(rule) is None


def test_a_remote_group_means_its_members_addresses_without_the_ports_own() -> None:
    state = NetworkState(ports=(
        port("p1", "web", ips=("10.78.0.5",)),
        port("p2", "web", ips=("10.78.0.6",), allowed_address_pairs=("10.78.0.32/28", "10.78.0.40")),
        port("p3", "db", ips=("10.78.0.7",)),
        port("p4", "web", ips=("10.78.0.9", "fd00::9")),
    ))
    rule = Rule("ingress", "IPv4", "tcp", 5432, 5432, remote_group_id="web")
    own = state.ports[0].addresses
    # Overlapping addresses are merged: nft refuses overlapping elements in a set.
    assert rule_line(rule, state, own) == (
        "meta nfproto ipv4 ip saddr { 10.78.0.6, 10.78.0.9, 10.78.0.32/28 } tcp dport 5432 accept")
    assert rule_line(replace(rule, ethertype="IPv6"), state, own) == (
        "meta nfproto ipv6 ip6 saddr fd00::9 tcp dport 5432 accept")
    assert rule_line(replace(rule, direction="egress", remote_group_id="db"), state, own) == (
        "meta nfproto ipv4 ip daddr 10.78.0.7 tcp dport 5432 accept")
    # A group without members (or only the port itself) admits no one.
    assert rule_line(replace(rule, remote_group_id="nobody"), state, own) is None
    lonely = NetworkState(ports=(state.ports[0],))
    assert rule_line(replace(rule, remote_group_id="web"), lonely, own) is None


def test_a_remote_address_group_means_its_addresses() -> None:
    state = NetworkState(address_groups={"office": ("192.0.2.0/24", "198.51.100.7/32", "2001:db8::/64")})
    rule = Rule("ingress", "IPv4", "tcp", 443, 443, remote_address_group_id="office")
    assert line(rule, state) == "meta nfproto ipv4 ip saddr { 192.0.2.0/24, 198.51.100.7 } tcp dport 443 accept"
    assert line(replace(rule, remote_address_group_id="unknown"), state) is None


# -- the script of a port -------------------------------------------------------------------------------------------
def test_a_port_gets_its_groups_rules_stateful_with_everything_else_dropped() -> None:
    state = NetworkState(groups={
        "ssh": Group("ssh", (Rule("ingress", "IPv4", "tcp", 22, 22, "10.0.0.0/8"),
                             Rule("egress", "IPv4"), Rule("egress", "IPv6"))),
        "web": Group("web", (WEB, Rule("ingress", "IPv4", "tcp", 22, 22, "10.0.0.0/8"))),  # a duplicate rule
        "unused": Group("unused", (Rule("ingress", "IPv4"),)),
    })
    script = ruleset(port("p1", "ssh", "web", "deleted-meanwhile"), state)
    assert script.startswith("table inet cp_secgroups\ndelete table inet cp_secgroups\ntable inet cp_secgroups {\n")
    assert chain(script, "ingress") == [
        "ct state invalid drop",
        "ct state established,related accept",
        "icmpv6 type { 130, 135, 136 } accept",
        "meta nfproto ipv4 ip saddr 10.0.0.0/8 tcp dport 22 accept",
        "meta nfproto ipv4 tcp dport 80 accept",
        "drop",
    ]
    egress = chain(script, "egress")
    assert egress[-5:] == ["ct state invalid drop", "ct state established,related accept",
                           "meta nfproto ipv4 accept", "meta nfproto ipv6 accept", "drop"]
    # Anti-spoofing: out only from the port's own address (and IPv6 link-local).
    assert "meta nfproto ipv4 ip saddr != 10.78.0.5 drop" in egress
    assert "meta nfproto ipv6 ip6 saddr != fe80::/64 drop" in egress
    assert egress.index("meta nfproto ipv4 ip saddr != 10.78.0.5 drop") < egress.index("meta nfproto ipv4 accept")
    # Only the port's traffic is filtered: eth0 in, out and through.
    assert chain(script, "input") == ["type filter hook input priority filter; policy accept;",
                                      'iifname "eth0" jump ingress']
    assert chain(script, "output")[1:] == ['oifname "eth0" jump egress']
    assert chain(script, "forward")[1:] == ['iifname "eth0" jump ingress', 'oifname "eth0" jump egress']


def test_the_script_depends_on_what_neutron_says_not_on_its_order() -> None:
    rules = (WEB, Rule("ingress", "IPv4", "udp", 53, 53), Rule("egress", "IPv4"))
    one = NetworkState(groups={"g": Group("g", rules), "h": Group("h", (Rule("ingress", "IPv4", "icmp"),))})
    other = NetworkState(groups={"h": one.groups["h"], "g": Group("g", tuple(reversed(rules)))})
    assert ruleset(port("p1", "g", "h"), one) == ruleset(port("p1", "h", "g"), other)


def test_without_groups_everything_is_dropped() -> None:
    script = ruleset(port("p1"), NetworkState())
    assert chain(script, "ingress")[-2:] == ["icmpv6 type { 130, 135, 136 } accept", "drop"]
    assert chain(script, "egress")[-3:] == ["ct state invalid drop", "ct state established,related accept", "drop"]


def test_a_host_without_a_port_drops_everything_it_would_send() -> None:
    egress = chain(ruleset(None, NetworkState()), "egress")
    assert "meta nfproto ipv4 drop" in egress and egress[-1] == "drop"


def test_only_stateless_groups_leave_conntrack_out() -> None:
    stateless = NetworkState(groups={"s": Group("s", (WEB,), stateful=False), "t": Group("t", (), stateful=False)})
    assert not any(rule.startswith("ct ") for rule in chain(ruleset(port("p1", "s", "t"), stateless), "ingress"))
    mixed = NetworkState(groups={**stateless.groups, "u": Group("u", ())})
    assert "ct state established,related accept" in chain(ruleset(port("p1", "s", "u"), mixed), "ingress")


def test_port_security_off_means_no_filtering() -> None:
    script = ruleset(port("p1", port_security=False), NetworkState())
    assert script == unfiltered() == "table inet cp_secgroups\ndelete table inet cp_secgroups\n"


def test_neutrons_answers_are_read_with_neutrons_defaults() -> None:
    state = NetworkState.from_neutron(
        ports=[{"id": "p1", "device_id": SERVER, "fixed_ips": [{"subnet_id": "s", "ip_address": "10.78.0.5"}],
                "security_groups": ["g"], "allowed_address_pairs": [{"ip_address": "10.78.0.200",
                                                                     "mac_address": "fa:16:3e:00:00:01"}]},
               {"id": "p2", "fixed_ips": [], "security_groups": [], "port_security_enabled": False}],
        groups=[{"id": "g", "security_group_rules": [
            {"id": "r1", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22,
             "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0", "remote_group_id": None},
            {"id": "r2", "direction": "egress", "ethertype": "IPv6", "protocol": None, "port_range_min": None,
             "port_range_max": None, "remote_ip_prefix": None, "remote_group_id": None}]}],
        address_groups=[{"id": "a", "addresses": ["192.0.2.0/24"]}])
    assert state.ports[0] == Port("p1", SERVER, ("10.78.0.5",), ("10.78.0.200",), ("g",), True)
    assert state.ports[1].port_security is False and state.ports[1].device_id == ""
    assert state.groups["g"] == Group("g", (Rule("ingress", "IPv4", "tcp", 22, 22, "0.0.0.0/0"),
                                            Rule("egress", "IPv6")), stateful=True)
    assert state.address_groups == {"a": ("192.0.2.0/24",)}


# -- the sync's bookkeeping -----------------------------------------------------------------------------------------
class FakeHosts:
    """Stands in for HostManager: two wired hosts, each "kernel" holding the last script loaded into it."""

    def __init__(self) -> None:
        self.hosts = [HostInfo(host_name_for(SERVER), "10.78.0.5/24", "10.78.0.1", "n", "web", Path("/nowhere"), 1),
                      HostInfo(host_name_for(OTHER), "10.78.0.6/24", "10.78.0.1", "n", "db", Path("/nowhere"), 2)]
        self.kernel: dict[str, str] = {}
        self.loads: list[str] = []

    def list(self) -> list[HostInfo]:
        return self.hosts

    def has_network(self, name: str) -> bool:
        return True

    def apply_firewall(self, name: str, script: str) -> str:
        self.loads.append(name)
        self.kernel[name] = f"listed: {script}"
        return self.kernel[name]

    def firewall_listing(self, name: str) -> str:
        return self.kernel.get(name, "")


def test_the_sync_rewrites_a_host_only_when_its_rules_changed_or_were_lost() -> None:
    hosts = FakeHosts()
    state = NetworkState(ports=(port("p1", "g"), port("p2", "g", device_id=OTHER, ips=("10.78.0.6",))),
                         groups={"g": Group("g", (WEB,))})
    sync = FirewallSync(hosts, lambda: state)  # type: ignore[arg-type]
    web, db = (host.name for host in hosts.hosts)
    assert sync.sync() == 2 and hosts.loads == [web, db]
    assert sync.sync() == 0 and sync.sync(verify=True) == 0 and len(hosts.loads) == 2

    # A rule added to the group: both hosts follow. A table lost behind our back: only a verifying round sees it.
    state = replace(state, groups={"g": Group("g", (WEB, Rule("ingress", "IPv4", "icmp")))})
    assert sync.sync() == 2
    hosts.kernel[db] = ""
    assert sync.sync() == 0 and sync.sync(verify=True) == 1 and hosts.loads[-1] == db

    # A booting host always gets its rules, even unchanged ones (its namespace may be new).
    sync.enforce(hosts.hosts[0])
    assert hosts.loads[-1] == web and hosts.kernel[web] == f"listed: {ruleset(state.ports[0], state)}"


def test_a_host_booting_while_neutron_is_down_drops_everything_until_neutron_answers() -> None:
    hosts = FakeHosts()
    state = NetworkState(ports=(port("p1", "g"),), groups={"g": Group("g", (WEB,))})
    answers: list[NetworkState] = []

    def fetch() -> NetworkState:
        if not answers:
            raise ConnectionError("neutron is starting")
        return answers[-1]

    sync = FirewallSync(hosts, fetch)  # type: ignore[arg-type]
    web = hosts.hosts[0].name
    sync.enforce(hosts.hosts[0])
    assert hosts.kernel[web] == f"listed: {ruleset(None, NetworkState())}"
    with pytest.raises(ConnectionError):
        sync.sync()
    answers.append(state)
    sync.sync()
    assert hosts.kernel[web] == f"listed: {ruleset(state.ports[0], state)}"


def test_a_host_is_matched_to_its_servers_port_by_device_and_address() -> None:
    host = FakeHosts().hosts[0]
    second_nic = port("p9", ips=("10.99.0.5",))
    assert port_of(host, NetworkState(ports=(second_nic, port("p1")))) == port("p1")
    assert port_of(host, NetworkState(ports=(port("p1", device_id=OTHER),))) is None


def test_the_table_is_the_projects_own() -> None:
    assert (firewall.FAMILY, firewall.TABLE, firewall.INTERFACE) == ("inet", "cp_secgroups", "eth0")


def test_a_round_does_not_undo_what_a_booting_host_got_from_a_newer_answer() -> None:
    hosts = FakeHosts()
    web = hosts.hosts[0].name
    before = NetworkState()  # the server's port is not there yet: this view would drop everything
    after = NetworkState(ports=(port("p1", "g"),), groups={"g": Group("g", (WEB,))})
    asked: list[NetworkState] = []

    def fetch() -> NetworkState:
        if not asked:  # the round asks first; the host boots (and asks) while that answer is on its way
            asked.append(before)
            sync.enforce(hosts.hosts[0])
            return before
        asked.append(after)
        return after

    sync = FirewallSync(hosts, fetch)  # type: ignore[arg-type]
    sync.sync()
    assert hosts.kernel[web] == f"listed: {ruleset(after.ports[0], after)}"


def test_neutron_is_not_asked_while_no_host_is_wired() -> None:
    hosts = FakeHosts()
    hosts.has_network = lambda name: False  # type: ignore[method-assign]

    def fetch() -> NetworkState:
        raise AssertionError("Neutron was asked")

    assert FirewallSync(hosts, fetch).sync() == 0  # type: ignore[arg-type]


def test_up_opens_the_admin_default_group_for_ssh_http_and_icmp_once() -> None:
    neutron_defaults = [
        {"direction": "ingress", "ethertype": "IPv4", "protocol": None, "remote_group_id": "d"},
        {"direction": "egress", "ethertype": "IPv4", "protocol": None},
    ]
    missing = admin_group.missing_rules({"id": "d", "security_group_rules": neutron_defaults})
    assert [(r["protocol"], r["port_range_min"], r["port_range_max"], r["remote_ip_prefix"]) for r in missing] == [
        ("tcp", 22, 22, "0.0.0.0/0"), ("tcp", 80, 80, "0.0.0.0/0"), ("icmp", None, None, "0.0.0.0/0")]
    assert all(r["security_group_id"] == "d" and r["direction"] == "ingress" for r in missing)
    assert admin_group.missing_rules({"id": "d", "security_group_rules": neutron_defaults + missing}) == []
