"""Pure rules of identity: the login throttle (how long a key is locked after failures) and the client address
of a request behind trusted proxies. Standard library only; the database side is controlplane.auth.throttle."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# An IPv6 client usually holds a whole /64: counting its addresses apart would give it 2^64 fresh throttles.
IPV6_CLIENT_PREFIX = 64
MAX_ADDRESS_LENGTH = 64


# --- the login throttle ------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ThrottlePolicy:
    """Failures a key may have before it is locked, how the lock grows, and how fast failures are forgotten.

    The n-th outstanding failure (n >= free_failures) locks the key for base_delay * 2^(n - free_failures), at
    most max_delay. Outstanding failures leak away, one per `forget_one_every` without a failure, so a key that
    stops failing is free again after a while, and the steady rate of guesses of a key that keeps failing is
    about one per `forget_one_every` once the lock has grown that long.
    """

    free_failures: int
    base_delay: timedelta
    max_delay: timedelta
    forget_one_every: timedelta

    def __post_init__(self) -> None:
        if self.free_failures < 1 or self.base_delay <= timedelta(0) or self.max_delay < self.base_delay:
            raise ValueError("a throttle needs at least one free failure and 0 < base delay <= max delay")
        if self.forget_one_every <= timedelta(0):
            raise ValueError("failures must be forgotten at some pace")

    @property
    def max_failures(self) -> int:
        """More failures than this change nothing but how long they take to be forgotten: the count stops here."""
        steps, delay = 0, self.base_delay
        while delay < self.max_delay:
            steps, delay = steps + 1, delay * 2
        return self.free_failures + steps


@dataclass(frozen=True)
class Streak:
    """The throttle's state of one key: failures not yet forgotten, the last one, and the lock they caused."""

    failures: int = 0
    last_failure_at: datetime | None = None
    locked_until: datetime | None = None


def lock_delay(policy: ThrottlePolicy, failures: int) -> timedelta | None:
    """How long `failures` outstanding failures lock the key; None while they are below the threshold."""
    if failures < policy.free_failures:
        return None
    doublings = min(failures - policy.free_failures, 40)  # 2^40 minutes is past any cap: no huge numbers
    return min(policy.base_delay * (2 ** doublings), policy.max_delay)


def outstanding(policy: ThrottlePolicy, streak: Streak, now: datetime) -> int:
    """The streak's failures not yet forgotten at `now` (a clock behind the last failure forgets nothing)."""
    if streak.last_failure_at is None or streak.failures <= 0:
        return 0
    quiet = max(now - streak.last_failure_at, timedelta(0))
    return max(streak.failures - int(quiet // policy.forget_one_every), 0)


def after_failure(policy: ThrottlePolicy, streak: Streak, now: datetime) -> tuple[Streak, bool]:
    """The streak after one more failure at `now`, and whether that failure locked the key."""
    failures = min(outstanding(policy, streak, now) + 1, policy.max_failures)
    delay = lock_delay(policy, failures)
    return Streak(failures, now, now + delay if delay is not None else None), delay is not None


def locked_for(streaks: Iterable[Streak], now: datetime) -> timedelta | None:
    """How long the longest lock among `streaks` still holds at `now`; None when none does."""
    remaining = [s.locked_until - now for s in streaks if s.locked_until is not None and s.locked_until > now]
    return max(remaining) if remaining else None


def retry_after_seconds(wait: timedelta) -> int:
    """A Retry-After value: whole seconds, rounded up, at least 1 (0 would invite an immediate retry)."""
    whole = int(wait.total_seconds())
    return max(whole + (1 if wait.total_seconds() > whole else 0), 1)


def describe_wait(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    return f"{-(-seconds // 60)} minutes"


# --- the client address ------------------------------------------------------------------------------------------

def parse_address(text: str | None) -> IPAddress | None:
    """An IP address from a peer or a proxy header entry ('203.0.113.5', '203.0.113.5:4711', '[2001:db8::1]:80',
    '2001:db8::1'); an IPv4 address mapped into IPv6 counts as the IPv4 one. None when it is not an address."""
    text = (text or "").strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _trusted(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == network.version and address in network for network in networks)


def client_address(peer: str | None, forwarded: str | None, trusted: Sequence[IPNetwork]) -> str:
    """Who is logging in: the socket peer, or, when the peer is a trusted proxy and it sent the configured header
    (a comma-separated list of hops, each proxy appending the address it saw), the right-most hop that is not a
    trusted proxy. Anything left of that hop was written by the client itself and is never believed, and an entry
    that is not an address ends the walk (a trusted proxy writes addresses only)."""
    peer_address = parse_address(peer)
    if peer_address is None:
        return (peer or "unknown").strip()[:MAX_ADDRESS_LENGTH] or "unknown"
    if not forwarded or not _trusted(peer_address, trusted):
        return str(peer_address)
    client = peer_address
    for hop in reversed([h for h in forwarded.split(",") if h.strip()]):
        address = parse_address(hop)
        if address is None:
            break
        client = address
        if not _trusted(address, trusted):
            break
    return str(client)


def throttle_key(address: str) -> str:
    """The key an address is throttled (and audited) under: an IPv4 address itself, an IPv6 address's /64."""
    parsed = parse_address(address)
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.ip_network(f"{parsed}/{IPV6_CLIENT_PREFIX}", strict=False))
    return str(parsed) if parsed is not None else address[:MAX_ADDRESS_LENGTH]
