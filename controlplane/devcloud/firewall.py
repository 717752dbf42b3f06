"""Neutron security groups as an nftables ruleset for one dev cloud host (pure: standard library only).

The dev cloud runs no Neutron agent, so nothing of Neutron filters its ports. Instead nova-compute keeps a table of
its own, `inet cp_secgroups`, in each host's network namespace (controlplane/devcloud/firewall_sync.py); this module
only turns what Neutron says (ports, security groups, address groups) into the nft script for one host's port.

Semantics follow Neutron's iptables firewall driver:
- a port with port security disabled is not filtered (the script removes our table);
- otherwise everything entering (ingress) or leaving (egress) the host's eth0 is dropped unless a rule of one of
  the port's groups accepts it, so a port without groups drops everything; replies of accepted connections pass
  (conntrack), unless every group of the port is stateless;
- a rule matches ethertype, protocol (any, a name or a number), a port range (tcp, udp, sctp, dccp, udplite) or an
  ICMP type and code (port_range_min/max), and its remote side: remote_ip_prefix, the fixed IPs and allowed address
  pairs of the member ports of remote_group_id (the port's own addresses left out), or the addresses of
  remote_address_group_id. A remote group or address group with no address of the rule's version matches nothing;
- fixed rules: egress only from the port's own addresses (IPv6 link-local allowed: the host's eth0 does not carry
  Neutron's MAC, so its EUI-64 address is not the one Neutron would allow), DHCP/DHCPv6 as a client only, no router
  advertisements out, other ICMPv6 out; MLD queries and neighbour discovery in.
IPv6 rules are mapped like IPv4 ones (the dev cloud's subnets are IPv4, so they match link-local traffic at most).
Traffic not on eth0 (loopback) is never filtered, as it never crosses a Neutron port.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

TABLE = "cp_secgroups"
FAMILY = "inet"
INTERFACE = "eth0"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# neutron_lib.constants.IP_PROTOCOL_MAP; 0 ("ip", "hopopt") means any protocol, as in Neutron's drivers.
PROTOCOLS = {"ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2, "ip": 0,
             "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58, "ipv6-nonxt": 59,
             "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46, "sctp": 132, "tcp": 6, "udp": 17,
             "udplite": 136, "vrrp": 112}
# Protocols whose rules take a port range, by number: nft's name for the header carrying the ports.
PORT_PROTOCOLS = {6: "tcp", 17: "udp", 132: "sctp", 33: "dccp", 136: "udplite"}
ICMP, ICMPV6 = 1, 58
# Neutron's fixed ICMPv6 rules (neutron/agent/firewall.py): in, MLD query and neighbour discovery; out from the
# unspecified address (duplicate address detection), MLD reports and neighbour solicitations.
ICMPV6_INGRESS = (130, 135, 136)
ICMPV6_UNSPECIFIED_EGRESS = (131, 135, 143)
ICMPV6_ROUTER_ADVERT = 134


@dataclass(frozen=True)
class Rule:
    direction: str  # ingress | egress
    ethertype: str  # IPv4 | IPv6
    protocol: str | None = None
    port_min: int | None = None
    port_max: int | None = None
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None
    remote_address_group_id: str | None = None

    @classmethod
    def from_neutron(cls, rule: Mapping[str, Any]) -> Rule:
        return cls(direction=rule["direction"], ethertype=rule.get("ethertype") or "IPv4",
                   protocol=rule.get("protocol"), port_min=rule.get("port_range_min"),
                   port_max=rule.get("port_range_max"), remote_ip_prefix=rule.get("remote_ip_prefix"),
                   remote_group_id=rule.get("remote_group_id"),
                   remote_address_group_id=rule.get("remote_address_group_id"))


@dataclass(frozen=True)
class Group:
    id: str
    rules: tuple[Rule, ...] = ()
    stateful: bool = True

    @classmethod
    def from_neutron(cls, group: Mapping[str, Any]) -> Group:
        return cls(id=group["id"], rules=tuple(Rule.from_neutron(r) for r in group.get("security_group_rules") or ()),
                   stateful=group.get("stateful", True) is not False)


@dataclass(frozen=True)
class Port:
    id: str
    device_id: str = ""
    fixed_ips: tuple[str, ...] = ()
    allowed_address_pairs: tuple[str, ...] = ()  # addresses or CIDRs
    security_groups: tuple[str, ...] = ()
    port_security: bool = True

    @classmethod
    def from_neutron(cls, port: Mapping[str, Any]) -> Port:
        return cls(id=port["id"], device_id=port.get("device_id") or "",
                   fixed_ips=tuple(ip["ip_address"] for ip in port.get("fixed_ips") or ()),
                   allowed_address_pairs=tuple(pair["ip_address"] for pair in port.get("allowed_address_pairs") or ()),
                   security_groups=tuple(port.get("security_groups") or ()),
                   # Without the port_security extension every port is filtered, as in Neutron.
                   port_security=port.get("port_security_enabled", True) is not False)

    @property
    def addresses(self) -> tuple[IPNetwork, ...]:
        """What the port may send from and what stands for it as a remote group member."""
        return tuple(ipaddress.ip_network(a, strict=False) for a in (*self.fixed_ips, *self.allowed_address_pairs))


@dataclass(frozen=True)
class NetworkState:
    """What Neutron says, as far as filtering goes: every port (for remote group members), group and address group."""

    ports: tuple[Port, ...] = ()
    groups: Mapping[str, Group] = field(default_factory=dict)
    address_groups: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @classmethod
    def from_neutron(cls, ports: Iterable[Mapping[str, Any]], groups: Iterable[Mapping[str, Any]],
                     address_groups: Iterable[Mapping[str, Any]] = ()) -> NetworkState:
        return cls(ports=tuple(Port.from_neutron(p) for p in ports),
                   groups={g["id"]: Group.from_neutron(g) for g in groups},
                   address_groups={a["id"]: tuple(a.get("addresses") or ()) for a in address_groups})

    def members(self, group_id: str) -> list[IPNetwork]:
        return [address for port in self.ports if group_id in port.security_groups for address in port.addresses]


# -- rendering --------------------------------------------------------------------------------------------------------
def _version(ethertype: str) -> int:
    return 6 if ethertype.lower() == "ipv6" else 4


def _addresses(networks: Iterable[IPNetwork], version: int) -> str | None:
    """An nft address or anonymous set; None when there is none. Overlaps are merged (nft refuses them in a set)."""
    chosen = [n for n in networks if n.version == version]
    collapsed = sorted(ipaddress.collapse_addresses(chosen))  # type: ignore[type-var]  # one version only
    if not collapsed:
        return None
    texts = [str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n) for n in collapsed]
    return texts[0] if len(texts) == 1 else "{ " + ", ".join(texts) + " }"


def _protocol_number(protocol: str | None, version: int) -> int | None:
    """The IP protocol number of a rule; 0 for any; None for a protocol this module does not know (matches nothing)."""
    if protocol is None or protocol.lower() in ("", "any"):
        return 0
    name = protocol.lower()
    number = int(name) if name.isdigit() else PROTOCOLS.get(name)
    if number is not None and not 0 <= number <= 255:
        return None
    # Neutron reads "icmp" (1) in an IPv6 rule as ICMPv6.
    return ICMPV6 if number == ICMP and version == 6 else number


def _protocol_match(number: int, port_min: int | None, port_max: int | None) -> str:
    if number == 0:
        return ""
    if number in PORT_PROTOCOLS:
        header = PORT_PROTOCOLS[number]
        # As Neutron's iptables driver reads a range: no minimum is every port, no maximum the minimum alone.
        if port_min is None:
            return f"meta l4proto {header}"
        if port_max is None or port_max == port_min:
            return f"{header} dport {port_min}"
        return f"{header} dport {port_min}-{port_max}"
    if number in (ICMP, ICMPV6):
        header = "icmp" if number == ICMP else "icmpv6"
        if port_min is None:
            return f"meta l4proto {'icmp' if number == ICMP else 'ipv6-icmp'}"
        return f"{header} type {port_min}" + (f" {header} code {port_max}" if port_max is not None else "")
    return f"meta l4proto {number}"


def rule_line(rule: Rule, state: NetworkState, own: Iterable[IPNetwork] = ()) -> str | None:
    """The nft rule accepting what `rule` allows, None when it can match nothing."""
    version = _version(rule.ethertype)
    ip, side = ("ip" if version == 4 else "ip6"), ("saddr" if rule.direction == "ingress" else "daddr")
    number = _protocol_number(rule.protocol, version)
    if number is None:
        return None
    parts = [f"meta nfproto ipv{version}"]
    if rule.remote_group_id is not None:
        own = set(own)
        remote = _addresses([m for m in state.members(rule.remote_group_id) if m not in own], version)
        if remote is None:
            return None
        parts.append(f"{ip} {side} {remote}")
    elif rule.remote_address_group_id is not None:
        cidrs = state.address_groups.get(rule.remote_address_group_id, ())
        remote = _addresses((ipaddress.ip_network(c, strict=False) for c in cidrs), version)
        if remote is None:
            return None
        parts.append(f"{ip} {side} {remote}")
    elif rule.remote_ip_prefix:
        prefix = ipaddress.ip_network(rule.remote_ip_prefix, strict=False)
        if prefix.version != version:
            return None
        if prefix.prefixlen:
            parts.append(f"{ip} {side} {_addresses([prefix], version)}")
    protocol = _protocol_match(number, rule.port_min, rule.port_max)
    if protocol:
        parts.append(protocol)
    return " ".join([*parts, "accept"])


def _chain(name: str, lines: Iterable[str]) -> list[str]:
    return [f"\tchain {name} {{", *(f"\t\t{line}" for line in lines), "\t}"]


def _replace(body: list[str]) -> str:
    # Declaring the table first makes the delete safe when it is absent: one transaction, atomic and idempotent.
    return "\n".join([f"table {FAMILY} {TABLE}", f"delete table {FAMILY} {TABLE}", *body]) + "\n"


def unfiltered() -> str:
    """The script that removes our table: nothing of the host's traffic is filtered."""
    return _replace([])


def ruleset(port: Port | None, state: NetworkState) -> str:
    """The nft script for the host whose Neutron port is `port` (None: the host has no port; all is dropped)."""
    if port is not None and not port.port_security:
        return unfiltered()
    port = port or Port(id="")
    groups = [state.groups[g] for g in port.security_groups if g in state.groups]
    # A group the port names but Neutron did not list (deleted meanwhile) adds no rules; its statefulness none either.
    stateful = not groups or any(g.stateful for g in groups)
    rules = [rule for group in groups for rule in group.rules]
    own = port.addresses
    accepted = {direction: sorted({line for rule in rules if rule.direction == direction
                                   if (line := rule_line(rule, state, own)) is not None})
                for direction in ("ingress", "egress")}
    conntrack = ["ct state invalid drop", "ct state established,related accept"] if stateful else []
    ingress = [*conntrack,
               f"icmpv6 type {{ {', '.join(map(str, ICMPV6_INGRESS))} }} accept",
               *accepted["ingress"], "drop"]
    own_v4 = _addresses(own, 4)
    own_v6 = _addresses([*own, ipaddress.IPv6Network("fe80::/64")], 6)
    egress = [
        "ip saddr 0.0.0.0 ip daddr 255.255.255.255 udp sport 68 udp dport 67 accept",
        f"ip6 saddr :: icmpv6 type {{ {', '.join(map(str, ICMPV6_UNSPECIFIED_EGRESS))} }} accept",
        f"meta nfproto ipv4 ip saddr != {own_v4} drop" if own_v4 else "meta nfproto ipv4 drop",
        f"meta nfproto ipv6 ip6 saddr != {own_v6} drop",
        "meta nfproto ipv4 udp sport 68 udp dport 67 accept",
        f"icmpv6 type {ICMPV6_ROUTER_ADVERT} drop",
        "meta l4proto ipv6-icmp accept",
        "meta nfproto ipv6 udp sport 546 udp dport 547 accept",
        "meta nfproto ipv4 udp sport 67 udp dport 68 drop",
        "meta nfproto ipv6 udp sport 547 udp dport 546 drop",
        *conntrack, *accepted["egress"], "drop",
    ]
    hook = "type filter hook {} priority filter; policy accept;"
    body = [f"table {FAMILY} {TABLE} {{",
            *_chain("ingress", ingress),
            *_chain("egress", egress),
            # Only traffic through the port is filtered; into the host is ingress, out of it egress.
            *_chain("input", [hook.format("input"), f'iifname "{INTERFACE}" jump ingress']),
            *_chain("output", [hook.format("output"), f'oifname "{INTERFACE}" jump egress']),
            *_chain("forward", [hook.format("forward"), f'iifname "{INTERFACE}" jump ingress',
                                f'oifname "{INTERFACE}" jump egress']),
            "}"]
    return _replace(body)
