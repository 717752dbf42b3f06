"""The login throttle's rule and the client address behind proxies: pure functions."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest

from controlplane.auth import domain
from controlplane.auth.throttle import ADDRESS_POLICY, USER_POLICY

T0 = datetime(2014, 7, 1, 3, 0, tzinfo=UTC)
POLICY = domain.ThrottlePolicy(free_failures=3, base_delay=timedelta(minutes=1), max_delay=timedelta(minutes=10),
                               forget_one_every=timedelta(hours=1))


def _fail_times(policy: domain.ThrottlePolicy, times: list[datetime]) -> list[tuple[domain.Streak, bool]]:
    streak, out = domain.Streak(), []
    for at in times:
        streak, locked = domain.after_failure(policy, streak, at)
        out.append((streak, locked))
    return out


def test_no_lock_below_the_threshold_then_doubling_up_to_the_cap():
    assert [domain.lock_delay(POLICY, n) for n in range(1, 9)] == [
        None, None, timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4), timedelta(minutes=8),
        timedelta(minutes=10), timedelta(minutes=10)]
    assert domain.lock_delay(POLICY, 10_000) == timedelta(minutes=10)  # no overflow however many


def test_the_failure_that_reaches_the_threshold_locks_and_each_later_one_locks_longer():
    results = _fail_times(POLICY, [T0 + timedelta(minutes=m) for m in (0, 1, 2, 4, 8, 16)])
    assert [locked for _, locked in results] == [False, False, True, True, True, True]
    assert [s.locked_until - s.last_failure_at for s, locked in results if locked] == [
        timedelta(minutes=1), timedelta(minutes=2), timedelta(minutes=4), timedelta(minutes=8)]


def test_failures_are_forgotten_one_per_interval_and_the_count_stops_at_the_cap():
    streak = domain.Streak(failures=3, last_failure_at=T0, locked_until=T0 + timedelta(minutes=1))
    assert domain.outstanding(POLICY, streak, T0 + timedelta(minutes=59)) == 3
    assert domain.outstanding(POLICY, streak, T0 + timedelta(hours=2, minutes=1)) == 1
    assert domain.outstanding(POLICY, streak, T0 + timedelta(days=1)) == 0
    assert domain.outstanding(POLICY, streak, T0 - timedelta(hours=5)) == 3  # a clock behind forgets nothing
    # Two hours quiet: 3 - 2 + 1 = 2 failures, below the threshold again.
    again, locked = domain.after_failure(POLICY, streak, T0 + timedelta(hours=2))
    assert (again.failures, locked, again.locked_until) == (2, False, None)
    assert POLICY.max_failures == 3 + 4  # 1, 2, 4, 8, then 10 is the cap
    capped = domain.Streak(failures=POLICY.max_failures, last_failure_at=T0)
    assert domain.after_failure(POLICY, capped, T0)[0].failures == POLICY.max_failures


def test_locked_for_is_the_longest_lock_still_running():
    now = T0
    streaks = [domain.Streak(5, now, now + timedelta(seconds=30)), domain.Streak(25, now, now + timedelta(minutes=4)),
               domain.Streak(1, now, None), domain.Streak(9, now, now - timedelta(seconds=1))]
    assert domain.locked_for(streaks, now) == timedelta(minutes=4)
    assert domain.locked_for(streaks[2:], now) is None
    assert domain.locked_for([], now) is None


@pytest.mark.parametrize("wait,seconds", [(timedelta(seconds=59.2), 60), (timedelta(seconds=60), 60),
                                          (timedelta(microseconds=1), 1), (timedelta(0), 1)])
def test_retry_after_rounds_up_to_whole_seconds(wait, seconds):
    assert domain.retry_after_seconds(wait) == seconds


def test_the_policies_in_use_make_sense():
    # An address gets more room than one name from it, and both locks grow to an hour at most.
    assert USER_POLICY.free_failures < ADDRESS_POLICY.free_failures
    assert domain.lock_delay(USER_POLICY, USER_POLICY.max_failures) == timedelta(hours=1)
    assert domain.lock_delay(ADDRESS_POLICY, ADDRESS_POLICY.max_failures) == timedelta(hours=1)


@pytest.mark.parametrize("kwargs", [
    {"free_failures": 0}, {"base_delay": timedelta(0)}, {"max_delay": timedelta(seconds=1)},
    {"forget_one_every": timedelta(0)}])
def test_a_policy_that_cannot_work_is_refused(kwargs):
    values = {"free_failures": 3, "base_delay": timedelta(minutes=1), "max_delay": timedelta(minutes=10),
              "forget_one_every": timedelta(hours=1), **kwargs}
    with pytest.raises(ValueError):
        domain.ThrottlePolicy(**values)


# --- the client address ------------------------------------------------------------------------------------------

PROXIES = (ipaddress.ip_network("10.0.0.0/30"), ipaddress.ip_network("2001:db8:ffff::/48"))


@pytest.mark.parametrize("peer,forwarded,expected", [
    ("203.0.113.5", None, "203.0.113.5"),
    # The header is the client's word unless a trusted proxy sent it.
    ("203.0.113.5", "198.51.100.1", "203.0.113.5"),
    ("10.0.0.1", "198.51.100.1", "198.51.100.1"),
    # Left of the right-most untrusted hop is whatever the client wrote: never believed.
    ("10.0.0.1", "1.1.1.1, 198.51.100.1", "198.51.100.1"),
    ("10.0.0.1", "1.1.1.1, 198.51.100.1, 10.0.0.2", "198.51.100.1"),
    # Only proxies in the chain: the farthest of them.
    ("10.0.0.1", "10.0.0.2", "10.0.0.2"),
    # A hop that is not an address ends the walk at the proxy that passed it on.
    ("10.0.0.1", "198.51.100.1, unknown", "10.0.0.1"),
    ("10.0.0.1", "1.1.1.1, garbage, 10.0.0.2", "10.0.0.2"),
    ("10.0.0.1", "", "10.0.0.1"),
    ("10.0.0.1", " , ", "10.0.0.1"),
    # Ports and brackets as some proxies write them; IPv4 mapped into IPv6 is the IPv4 address.
    ("10.0.0.1", "198.51.100.1:4711", "198.51.100.1"),
    ("2001:db8:ffff::1", "[2001:db8::7]:443", "2001:db8::7"),
    ("::ffff:203.0.113.5", None, "203.0.113.5"),
    # Test clients, unix sockets: kept as they are, bounded.
    ("testclient", "198.51.100.1", "testclient"),
    (None, None, "unknown"),
])
def test_client_address(peer, forwarded, expected):
    assert domain.client_address(peer, forwarded, PROXIES) == expected


def test_without_trusted_proxies_the_header_is_never_believed():
    assert domain.client_address("10.0.0.1", "198.51.100.1", ()) == "10.0.0.1"


@pytest.mark.parametrize("address,key", [
    ("203.0.113.5", "203.0.113.5"),
    ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
    ("2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"),
    ("testclient", "testclient"),
    ("x" * 100, "x" * 64),
])
def test_an_ipv6_client_is_throttled_by_its_slash_64(address, key):
    assert domain.throttle_key(address) == key
