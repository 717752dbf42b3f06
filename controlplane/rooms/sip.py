"""SIP OPTIONS probes as plain data: the request, the parts of a response a prober needs, the send schedule of a
cycle, and which hosts may be probed at all. Standard library only; the sockets are in `sip_probe`.

RFC 3261 in the small: a request is a start line, CRLF-separated headers (case-insensitive names, compact forms
such as `i` for Call-ID and `v` for Via) and an empty line; a response starts `SIP/2.0 <code> <reason>`.
"""

from __future__ import annotations

import ipaddress
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

BRANCH_MAGIC = "z9hG4bK"  # RFC 3261 8.1.1.7: a branch of an RFC 3261 client starts with it
MAX_DATAGRAM = 65_535
USER_AGENT = "controlplane-room-prober"
# What a probe may carry in its request line and To header: sip:user@host[:port][;params], no whitespace, no
# quotes, angle brackets or control characters (a catalogue value never becomes a header of its own).
PROBE_URI = re.compile(r"^sip:[A-Za-z0-9._~+\-!$&'()*=,;%]{1,64}@[A-Za-z0-9.\-\[\]:]{1,200}"
                       r"(;[A-Za-z0-9._~=\-]{1,64})*$")
_TOKEN = re.compile(r"^[A-Za-z0-9._~+\-!%*`']{1,128}$")
_STATUS_LINE = re.compile(rb"^SIP/2\.0 ([1-6][0-9][0-9])(?: [^\r\n]*)?$")
# Header names in compact form (RFC 3261 7.3.3) for the headers a prober reads.
_COMPACT = {b"i": b"call-id", b"v": b"via"}


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """A room endpoint to probe: `host` is an IP literal (never a DNS name), `uri` its SIP URI (sip:user@domain)."""

    key: str
    host: str
    port: int
    uri: str


@dataclass(frozen=True, slots=True)
class ProbeResult:
    """What one probe found: `ok` for a 2xx; `status` the final response's code (a 404 from a registrar: the room is
    not registered); `rtt` seconds from the first send to the answer; `error` "timeout" or the transport's error."""

    key: str
    ok: bool
    status: int | None
    rtt: float | None
    error: str | None


@dataclass(frozen=True, slots=True)
class SipResponse:
    """The parts of a SIP response a prober matches and reports."""

    status: int
    call_id: str
    branch: str | None
    cseq_method: str | None


def ip_literal(host: str) -> Address | None:
    """The address `host` spells (IPv4 or IPv6, no zone id, no brackets), or None for anything else (a name)."""
    if not isinstance(host, str) or "%" in host:
        return None
    return _parse_ip(host)


@lru_cache(maxsize=4096)  # a cycle asks for the same few hosts (a registrar, the prober's own address) again
def _parse_ip(host: str) -> Address | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _unmapped(address: Address) -> Address:
    """An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is the IPv4 address it carries: that is where it goes."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _special(item: Address | Network) -> bool:
    """Loopback, link-local, multicast, unspecified or reserved (broadcast included): never a room by accident."""
    return bool(item.is_loopback or item.is_link_local or item.is_multicast or item.is_unspecified
                or item.is_reserved)


def target_allowed(host: str, allowed: Sequence[Network]) -> bool:
    """Whether `host` may be probed: an IP literal inside one of the `allowed` networks. A loopback, link-local,
    multicast, unspecified or reserved address needs an allowed network that is itself of that kind (127.0.0.0/8,
    ::1/128, fe80::/64, ...): a broad network such as 0.0.0.0/0 or ::/0 does not let one through. Names are
    refused (a name is resolved elsewhere, to anything), as are zone ids; an IPv4-mapped IPv6 address counts as
    the IPv4 address it carries. The guard against SSRF: only catalogue endpoints in configured networks."""
    address = ip_literal(host)
    if address is None:
        return False
    address = _unmapped(address)
    special = _special(address)
    for network in allowed:
        if network.version != address.version or address not in network:
            continue
        if not special:
            return True
        if (address.is_loopback and network.is_loopback) or (address.is_link_local and network.is_link_local) or (
                address.is_multicast and network.is_multicast) or (
                address.is_unspecified and network.is_unspecified) or (address.is_reserved and network.is_reserved):
            return True
    return False


def valid_probe_uri(uri: str) -> bool:
    """Whether `uri` can be the Request-URI of a probe over UDP: a `sip:` URI without whitespace, quotes, angle
    brackets or control characters (`sips:` needs TLS, which a UDP probe cannot give)."""
    return isinstance(uri, str) and len(uri) <= 300 and PROBE_URI.match(uri) is not None


def host_port(host: str, port: int) -> str:
    """`host:port` as a Via sent-by or Contact host: an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def build_options(uri: str, *, call_id: str, branch: str, from_tag: str, local_host: str, local_port: int,
                  cseq: int = 1, max_forwards: int = 70) -> bytes:
    """The OPTIONS request probing `uri` over UDP from `local_host:local_port` (RFC 3261 11.1): Via with the branch
    (`z9hG4bK...`) and `rport` (RFC 3581: answer to the port it came from), Max-Forwards, From with a tag, To,
    Call-ID, CSeq, Contact, Accept, Content-Length: 0. ValueError for a URI or token that could break the text."""
    if not valid_probe_uri(uri):
        raise ValueError(f"not a sip: URI a probe can carry: {uri[:80]!r}")
    if not branch.startswith(BRANCH_MAGIC):
        raise ValueError(f"a branch starts with {BRANCH_MAGIC}")
    for name, token in (("call_id", call_id), ("branch", branch), ("from_tag", from_tag)):
        if not _TOKEN.match(token):
            raise ValueError(f"{name} must be a plain token")
    if ip_literal(local_host) is None:
        raise ValueError("local_host must be an IP address")
    sent_by = host_port(local_host, local_port)
    contact_host = f"[{local_host}]" if ":" in local_host else local_host
    return (
        f"OPTIONS {uri} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {sent_by};branch={branch};rport\r\n"
        f"Max-Forwards: {max_forwards}\r\n"
        f"From: <sip:probe@{contact_host}>;tag={from_tag}\r\n"
        f"To: <{uri}>\r\n"
        f"Call-ID: {call_id}\r\n"
        f"CSeq: {cseq} OPTIONS\r\n"
        f"Contact: <sip:probe@{sent_by}>\r\n"
        "Accept: application/sdp\r\n"
        f"User-Agent: {USER_AGENT}\r\n"
        "Content-Length: 0\r\n"
        "\r\n"
    ).encode("ascii")


def _via_branch(value: bytes) -> str | None:
    """The branch parameter of the first (topmost) via-parm of a Via header value."""
    first = value.split(b",", 1)[0]
    for param in first.split(b";")[1:]:
        name, _, text = param.partition(b"=")
        if name.strip().lower() == b"branch":
            return text.strip().decode("ascii", "replace") or None
    return None


def parse_response(data: bytes) -> SipResponse | None:
    """The status, Call-ID, topmost Via branch and CSeq method of a SIP response datagram; None for anything else
    (a request, garbage, a message cut short or oversized, one without a Call-ID). Lines may end in CRLF or,
    leniently, LF. Never raises."""
    try:
        return _parse_response(data)
    except Exception:  # a prober must outlive any datagram; the parser is meant never to get here
        return None


def _parse_response(data: bytes) -> SipResponse | None:
    if not isinstance(data, bytes | bytearray) or not data.startswith(b"SIP/2.0 ") or len(data) > MAX_DATAGRAM:
        return None
    data = bytes(data).replace(b"\r\n", b"\n")
    head, blank, _body = data.partition(b"\n\n")
    if not blank:  # cut short: a datagram holds the whole message, headers ending in an empty line
        return None
    lines = head.split(b"\n")
    match = _STATUS_LINE.match(lines[0].rstrip(b"\r"))
    if match is None:
        return None
    call_id: str | None = None
    branch: str | None = None
    cseq_method: str | None = None
    seen_via = False
    for raw in lines[1:]:
        if raw[:1] in (b" ", b"\t"):  # a folded continuation line (RFC 3261 7.3.1): of no header read here
            continue
        name, colon, value = raw.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        name = _COMPACT.get(name, name)
        value = value.strip()
        if name == b"call-id" and call_id is None:
            call_id = value.decode("utf-8", "replace")
        elif name == b"via" and not seen_via:
            seen_via = True
            branch = _via_branch(value)
        elif name == b"cseq" and cseq_method is None:
            parts = value.split()
            if len(parts) == 2 and parts[0].isdigit():
                cseq_method = parts[1].decode("ascii", "replace").upper()
    if not call_id:
        return None
    return SipResponse(status=int(match.group(1)), call_id=call_id, branch=branch, cseq_method=cseq_method)


def jitter_schedule(count: int, cycle: float, rng: random.Random) -> list[float]:
    """When each of `count` probes is sent, as offsets in [0, cycle) from the cycle's start: the window is cut into
    `count` equal slots, each target gets a slot at random and a random point inside it. So sends never bunch (one
    per slot, ~cycle/count apart) and no target has a fixed place in the cycle. `cycle` 0: all at once."""
    if count < 0 or cycle < 0:
        raise ValueError("count and cycle must not be negative")
    if count == 0:
        return []
    if cycle == 0:
        return [0.0] * count
    width = cycle / count
    slots = list(range(count))
    rng.shuffle(slots)
    return [min((slot + rng.random()) * width, cycle * (1 - 1e-12)) for slot in slots]


def retransmit_offsets(timeout: float, retries: int) -> list[float]:
    """When a probe is sent again after its first send: `retries` times, every timeout / (retries + 1) seconds; the
    probe gives up at `timeout`."""
    if timeout <= 0 or retries < 0:
        raise ValueError("timeout must be positive and retries not negative")
    step = timeout / (retries + 1)
    return [step * k for k in range(1, retries + 1)]
