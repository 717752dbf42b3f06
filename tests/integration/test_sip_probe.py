"""The room prober against real SIP endpoints: sipp room endpoints (Debian `sip-tester`), and the endpoint pool of
tests/sip_peers.py for what sipp cannot be made to do (junk, non-2xx answers, lost requests, 200 rooms at once)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from components import missing
from sip_peers import EndpointPool, PoolSettings, free_udp_port, sipp_path, sipp_peers, stop_sipp

from controlplane.rooms.sip_probe import ProbeResult, ProbeTarget, probe_all, probe_once

UNREACHABLE = {"timeout", "port unreachable (ICMP)"}


def _targets(host: str, ports: list[int], prefix: str = "room") -> list[ProbeTarget]:
    return [ProbeTarget(f"{prefix}-{i}", host, port, f"sip:{prefix}{i}@vc.go.kr") for i, port in enumerate(ports)]


def _cycle(targets: list[ProbeTarget], **options: object) -> list[ProbeResult]:
    options = {"timeout": 0.6, "cycle": 0.3, **options}
    return asyncio.run(probe_all(targets, **options))  # type: ignore[arg-type]


@pytest.fixture
def sipp(tmp_path: Path) -> None:
    if sipp_path() is None:
        missing("sipp", "sipp is not installed (/usr/bin/sipp)")


def test_sipp_rooms_answer_and_a_stopped_one_is_reported_within_one_cycle(sipp: None, tmp_path: Path) -> None:
    with sipp_peers(4, tmp_path) as peers:
        targets = _targets("127.0.0.1", [peer.port for peer in peers])
        results = _cycle(targets)
        assert [r.key for r in results] == [t.key for t in targets]
        assert all(r.ok and r.status == 200 and r.error is None for r in results), results
        assert all(r.rtt is not None and 0 < r.rtt < 0.6 for r in results)

        stop_sipp(peers[2])
        assert not peers[2].running()
        # A new cycle: fresh Call-IDs (sipp drops a Call-ID it has seen), so the others answer again.
        results = _cycle(targets)
        down = results[2]
        assert not down.ok and down.status is None and down.rtt is None and down.error in UNREACHABLE, down
        assert all(r.ok and r.status == 200 for i, r in enumerate(results) if i != 2), results


def test_probe_once_against_sipp(sipp: None, tmp_path: Path) -> None:
    with sipp_peers(1, tmp_path) as (peer,):
        result = probe_once(ProbeTarget("room", "127.0.0.1", peer.port, "sip:room@vc.go.kr"), 1.0,
                            local_address="127.0.0.1")
        assert result.ok and result.status == 200 and result.rtt is not None and result.rtt > 0
        again = probe_once(ProbeTarget("room", "127.0.0.1", peer.port, "sip:room@vc.go.kr"), 1.0)
        assert again.ok, again


def test_a_closed_port_is_not_ok() -> None:
    result = probe_once(ProbeTarget("closed", "127.0.0.1", free_udp_port(), "sip:room@vc.go.kr"), 0.5)
    assert not result.ok and result.status is None and result.error in UNREACHABLE, result


def test_unreachable_rooms_behind_one_address_fail_and_the_others_do_not() -> None:
    async def scenario() -> list[ProbeResult]:
        async with EndpointPool(2) as pool:
            closed = free_udp_port()
            # Three rooms behind one closed port (as behind a registrar that is down), between rooms that answer.
            targets = [ProbeTarget("up-0", "127.0.0.1", pool.ports[0], "sip:up0@vc.go.kr"),
                       *(ProbeTarget(f"down-{i}", "127.0.0.1", closed, f"sip:down{i}@vc.go.kr") for i in range(3)),
                       ProbeTarget("up-1", "127.0.0.1", pool.ports[1], "sip:up1@vc.go.kr")]
            return await probe_all(targets, timeout=0.5, cycle=0.3, retries=1)

    results = {r.key: r for r in asyncio.run(scenario())}
    assert results["up-0"].ok and results["up-1"].ok, results
    for key in ("down-0", "down-1", "down-2"):
        assert not results[key].ok and results[key].error in UNREACHABLE, results[key]


def test_junk_datagrams_to_the_probers_socket_are_ignored() -> None:
    async def scenario() -> tuple[list[ProbeResult], int]:
        async with EndpointPool(5, settings=PoolSettings(junk_first=True)) as pool:
            results = await probe_all(_targets("127.0.0.1", pool.ports), timeout=1.0, cycle=0.2)
            return results, len(pool.arrivals)

    results, requests = asyncio.run(scenario())
    # Before each answer the endpoint sent 14 datagrams that are not it (garbage, a request, foreign Call-IDs,
    # the right Call-ID with another branch or method, bad status lines, 60 kB): the answer still counts.
    assert all(r.ok and r.status == 200 for r in results), results
    assert requests == 5  # answered at the first send: nothing was retransmitted


def test_final_answers_other_than_2xx_are_reported_with_their_status() -> None:
    async def scenario() -> list[ProbeResult]:
        settings = PoolSettings(trying_first=True)
        async with EndpointPool(3, settings=settings) as pool:
            settings.statuses = {pool.ports[1]: 404, pool.ports[2]: 503}
            return await probe_all(_targets("127.0.0.1", pool.ports), timeout=1.0, cycle=0.2)

    ok, unregistered, unavailable = asyncio.run(scenario())
    assert ok.ok and ok.status == 200  # the 100 Trying before it did not end the probe
    assert (unregistered.ok, unregistered.status, unregistered.error) == (False, 404, None)
    assert unregistered.rtt is not None and unregistered.rtt > 0
    assert (unavailable.ok, unavailable.status, unavailable.error) == (False, 503, None)


def test_a_lost_request_is_sent_again_with_the_same_transaction() -> None:
    async def scenario(retries: int) -> tuple[list[ProbeResult], Counter[bytes]]:
        async with EndpointPool(3, settings=PoolSettings(drop_first=True)) as pool:
            results = await probe_all(_targets("127.0.0.1", pool.ports), timeout=0.6, cycle=0.1, retries=retries)
            return results, pool.requests

    results, requests = asyncio.run(scenario(1))
    assert all(r.ok for r in results), results
    assert all(r.rtt is not None and r.rtt >= 0.25 for r in results)  # from the first send: it was lost
    assert sorted(requests.values()) == [2, 2, 2]  # each Call-ID twice: the retransmission, nothing more

    results, requests = asyncio.run(scenario(0))
    assert [r.error for r in results] == ["timeout"] * 3
    assert sorted(requests.values()) == [1, 1, 1]


def test_a_silent_endpoint_times_out_after_its_retransmissions() -> None:
    async def scenario() -> tuple[list[ProbeResult], list[int], Counter[int]]:
        settings = PoolSettings()
        async with EndpointPool(2, settings=settings) as pool:
            settings.silent = {pool.ports[0]}
            results = await probe_all(_targets("127.0.0.1", pool.ports), timeout=0.45, cycle=0.0, retries=2)
            return results, pool.ports, Counter(port for _, port, _ in pool.arrivals)

    (silent, answering), ports, requests = asyncio.run(scenario())
    assert (silent.ok, silent.status, silent.rtt, silent.error) == (False, None, None, "timeout")
    assert answering.ok
    assert requests[ports[0]] == 3  # the request and its 2 retransmissions
    assert requests[ports[1]] == 1


def test_two_hundred_rooms_in_one_cycle_are_spread_over_it() -> None:
    cycle = 1.0

    async def scenario() -> tuple[list[ProbeResult], list[tuple[float, int, bytes]], list[int]]:
        async with EndpointPool(200) as pool:
            results = await probe_all(_targets("127.0.0.1", pool.ports), timeout=1.0, cycle=cycle,
                                       rng=random.Random(2014))
            return results, pool.arrivals, pool.ports

    results, arrivals, ports = asyncio.run(scenario())
    assert len(results) == 200 and all(r.ok and r.status == 200 for r in results), [r for r in results if not r.ok]
    assert len(arrivals) == 200 and len({call_id for _, _, call_id in arrivals}) == 200  # a fresh Call-ID each
    times = sorted(at for at, _, _ in arrivals)
    assert times[-1] - times[0] >= 0.5 * cycle  # not all at once: spread over the cycle window
    tenths = Counter(min(int((at - times[0]) / (cycle / 10)), 9) for at in times)
    assert len(tenths) >= 8 and max(tenths.values()) <= 100  # ~20 per tenth; never half of them together
    assert [port for _, port, _ in sorted(arrivals)] != ports  # sent in a random order, not the catalogue's


def test_ipv4_and_ipv6_rooms_in_one_cycle() -> None:
    async def scenario() -> list[ProbeResult]:
        async with EndpointPool(2) as v4, EndpointPool(2, host="::1") as v6:
            targets = _targets("127.0.0.1", v4.ports, "v4") + _targets("::1", v6.ports, "v6")
            return await probe_all(targets, timeout=1.0, cycle=0.2)

    results = asyncio.run(scenario())
    assert [r.key for r in results] == ["v4-0", "v4-1", "v6-0", "v6-1"]
    assert all(r.ok and r.status == 200 for r in results), results


def test_targets_that_cannot_be_probed_get_an_error_and_nothing_is_sent() -> None:
    async def scenario() -> tuple[list[ProbeResult], int]:
        async with EndpointPool(1) as pool:
            port = pool.ports[0]
            targets = [
                ProbeTarget("name", "localhost", port, "sip:room@vc.go.kr"),
                ProbeTarget("zone", "fe80::1%lo", port, "sip:room@vc.go.kr"),
                ProbeTarget("injection", "127.0.0.1", port, "sip:room@vc.go.kr\r\nX-Evil: 1"),
                ProbeTarget("port", "127.0.0.1", 0, "sip:room@vc.go.kr"),
                ProbeTarget("good", "127.0.0.1", port, "sip:room@vc.go.kr"),
            ]
            results = await probe_all(targets, timeout=1.0, cycle=0.1)
            return results, len(pool.arrivals)

    results, requests = asyncio.run(scenario())
    assert [r.ok for r in results] == [False, False, False, False, True]
    assert all(r.error and r.status is None for r in results[:4]), results
    assert "not an IP address" in (results[0].error or "")
    assert requests == 1  # only the good target was sent anything


def test_bad_arguments_are_refused() -> None:
    target = [ProbeTarget("room", "127.0.0.1", 5060, "sip:room@vc.go.kr")]
    options: list[dict[str, Any]] = [{"timeout": 0, "cycle": 1.0}, {"timeout": 1.0, "cycle": -1.0},
                                     {"timeout": 1.0, "cycle": 1.0, "retries": -1},
                                     {"timeout": 1.0, "cycle": 1.0, "local_address": "localhost"}]
    for each in options:
        with pytest.raises(ValueError):
            asyncio.run(probe_all(target, **each))
    assert asyncio.run(probe_all([], timeout=1.0, cycle=1.0)) == []
