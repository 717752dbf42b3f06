"""The room prober: every VC room endpoint asked with a SIP OPTIONS request over UDP, once per cycle.

One UDP socket per address family serves the whole cycle (an asyncio DatagramProtocol reads the answers); each
target is sent at its own random point of the cycle window (`sip.jitter_schedule`), so thousands of rooms are not
asked at once; an answer is matched to its probe by Call-ID (fresh and unguessable for every probe) and Via branch.
A final response (2xx-6xx) ends a probe: ok for a 2xx, otherwise its status (a registrar's 404: the room is not
registered). No answer: the request is sent again `retries` times, every timeout / (retries + 1) seconds, and at
`timeout` the probe ends with error "timeout". An ICMP error (port, host or network unreachable: the socket asks
the kernel for them with IP_RECVERR and reads its error queue, which names the datagram's destination) or a send
error ends it with that error. Datagrams that are not an answer to a pending probe are ignored.

    results = await probe_all(targets, timeout=2.0, cycle=30.0)
    result = probe_once(ProbeTarget("room-1", "10.20.0.5", 5060, "sip:room1@vc.go.kr"), timeout=2.0)

Targets must be IP literals (no name is ever resolved); which ones may be probed at all is `target_allowed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import ipaddress
import os
import random
import re
import secrets
import socket
import struct
import time
from collections.abc import Iterable
from typing import Any, cast

from controlplane.rooms.sip import (
    MAX_DATAGRAM,
    ProbeResult,
    ProbeTarget,
    build_options,
    ip_literal,
    jitter_schedule,
    parse_response,
    retransmit_offsets,
    target_allowed,
    valid_probe_uri,
)

__all__ = ["ProbeResult", "ProbeTarget", "probe_all", "probe_once", "target_allowed"]

# Linux's values where the socket module has no name for them (it has none for these two in Python 3.11).
IP_RECVERR = getattr(socket, "IP_RECVERR", 11)
IPV6_RECVERR = getattr(socket, "IPV6_RECVERR", 25)
RECEIVE_BUFFER = 1 << 20  # answers of a burst wait here; the kernel caps it at net.core.rmem_max
# The sender wakes at most about TICKS times a cycle (every cycle / TICKS seconds, 1-20 ms) and sends what is due:
# the spread stays, the wake-ups (each an epoll_wait and a loop turn) do not grow with the number of targets.
TICKS = 1000
BURST = 64  # sends in a row before the loop reads what has come in
READ_BATCH = 256  # datagrams read in one go once the loop says the socket is readable
_ICMP_ERRORS = {
    errno.ECONNREFUSED: "port unreachable (ICMP)",
    errno.EHOSTUNREACH: "host unreachable (ICMP)",
    errno.ENETUNREACH: "network unreachable (ICMP)",
    errno.EACCES: "administratively prohibited (ICMP)",
}
_CALL_ID = re.compile(rb"\r\nCall-ID: ([^\r\n]+)\r\n")


class _Probe:
    """One target's probe in a cycle: its request, when it was first sent, how often, and its timer."""

    __slots__ = ("addr", "branch", "call_id", "first_sent", "index", "key", "request", "sends", "timer")

    def __init__(self, index: int, key: str, addr: tuple[str, int], call_id: str, branch: str) -> None:
        self.index, self.key, self.addr, self.call_id, self.branch = index, key, addr, call_id, branch
        self.request = b""
        self.first_sent = 0.0
        self.sends = 0
        self.timer: asyncio.TimerHandle | None = None


class _Cycle:
    """The results of one cycle, and a future that is done when every probe has one."""

    def __init__(self, count: int, *, timeout: float, retries: int) -> None:
        self.results: list[ProbeResult | None] = [None] * count
        self.remaining = 0
        # After the k-th send a probe's timer fires at first send + marks[k - 1]: a retransmission, then at last
        # the timeout.
        self.marks = [*retransmit_offsets(timeout, retries), timeout]
        self.retries = retries
        self.loop = asyncio.get_running_loop()
        self.done: asyncio.Future[None] = self.loop.create_future()

    def expect(self) -> None:
        self.remaining += 1

    def settle(self, index: int, result: ProbeResult) -> None:
        if self.results[index] is not None:
            return
        self.results[index] = result
        self.remaining -= 1
        if self.remaining == 0 and not self.done.done():
            self.done.set_result(None)


class _Channel(asyncio.DatagramProtocol):
    """The cycle's socket of one address family: sends probes, matches answers, reads the ICMP error queue."""

    def __init__(self, cycle: _Cycle, sock: socket.socket, sent_by: str) -> None:
        self.cycle, self.sock, self.sent_by = cycle, sock, sent_by
        self.local_port = int(sock.getsockname()[1])
        self.transport: asyncio.DatagramTransport | None = None
        self.pending: dict[str, _Probe] = {}
        self.by_addr: dict[tuple[str, int], set[_Probe]] = {}

    # --- asyncio callbacks ------------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # asyncio's own class does not derive from it

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self._answer(data)
        # asyncio reads one datagram per loop turn; answers come in bursts, so read on while there are more.
        for _ in range(READ_BATCH):
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self.drain_errors()  # an ICMP error: its record is in the error queue
                return
            self._answer(data)

    def _answer(self, data: bytes) -> None:
        received = time.monotonic()
        response = parse_response(data)
        probe = self.pending.get(response.call_id) if response is not None else None
        if response is None or probe is None or response.branch != probe.branch or (
                response.cseq_method not in (None, "OPTIONS")):
            return  # not an answer to a waiting probe: junk, late, or someone else's
        if response.status < 200:  # provisional (100 Trying): the final answer is still to come
            return
        ok = 200 <= response.status < 300
        self.finish(probe, ProbeResult(probe.key, ok, response.status, received - probe.first_sent, None))

    def error_received(self, exc: Exception) -> None:
        # A read (or asyncio's buffered send) met the error an ICMP message left on the socket: the error queue
        # says for which datagram.
        self.drain_errors()

    def connection_lost(self, exc: Exception | None) -> None:
        for probe in list(self.pending.values()):
            self.finish(probe, ProbeResult(probe.key, False, None, None, f"socket closed: {exc}" if exc else
                                           "socket closed"))

    # --- probes ---------------------------------------------------------------------------------------------
    def send(self, probe: _Probe, target: ProbeTarget) -> None:
        """The probe's first send: build its request, send it, arm its retransmission / timeout timer."""
        try:
            probe.request = build_options(target.uri, call_id=probe.call_id, branch=probe.branch,
                                          from_tag=probe.call_id[-12:], local_host=self.sent_by,
                                          local_port=self.local_port)
        except ValueError as exc:
            self.cycle.settle(probe.index, ProbeResult(probe.key, False, None, None, f"no request: {exc}"))
            return
        self.pending[probe.call_id] = probe
        self.by_addr.setdefault(probe.addr, set()).add(probe)
        probe.first_sent = time.monotonic()
        self._transmit(probe)

    def _transmit(self, probe: _Probe) -> None:
        probe.sends += 1
        for _ in range(3):
            try:
                self.sock.sendto(probe.request, probe.addr)
                break
            except ConnectionRefusedError:
                # The error an ICMP message for an earlier datagram left on the socket, handed to this send: take
                # the error queue's records (they fail the probes they are about) and send again.
                self.drain_errors()
                if probe.call_id not in self.pending:
                    return
            except (BlockingIOError, InterruptedError):
                assert self.transport is not None
                self.transport.sendto(probe.request, probe.addr)  # asyncio queues it until the socket can send
                break
            except OSError as exc:
                self.finish(probe, ProbeResult(probe.key, False, None, None, f"send failed: {exc.strerror or exc}"))
                return
        if probe.call_id in self.pending:
            due = probe.first_sent + self.cycle.marks[probe.sends - 1]
            probe.timer = self.cycle.loop.call_later(max(0.0, due - time.monotonic()), self._tick, probe)

    def _tick(self, probe: _Probe) -> None:
        if probe.call_id not in self.pending:
            return
        if probe.sends <= self.cycle.retries:
            self._transmit(probe)
        else:
            self.finish(probe, ProbeResult(probe.key, False, None, None, "timeout"))

    def finish(self, probe: _Probe, result: ProbeResult) -> None:
        if self.pending.pop(probe.call_id, None) is None:
            return
        if probe.timer is not None:
            probe.timer.cancel()
        waiting = self.by_addr.get(probe.addr)
        if waiting is not None:
            waiting.discard(probe)
            if not waiting:
                del self.by_addr[probe.addr]
        self.cycle.settle(probe.index, result)

    def drain_errors(self) -> None:
        """Read the socket's error queue; each record fails the probe whose request it returns (by Call-ID), or,
        when the returned request is cut short, every pending probe sent to the same address."""
        while True:
            try:
                data, ancillary, _flags, addr = self.sock.recvmsg(2048, 512, socket.MSG_ERRQUEUE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            text = _error_text(ancillary)
            found = _CALL_ID.search(data)
            if found:  # about that probe only (if it is still waiting: not a late one about an answered probe)
                probe = self.pending.get(found.group(1).decode("ascii", "replace"))
                if probe is not None:
                    self.finish(probe, ProbeResult(probe.key, False, None, None, text))
                continue
            key = _addr_key(addr)
            for each in list(self.by_addr.get(key, ())) if key else ():
                self.finish(each, ProbeResult(each.key, False, None, None, text))


def _same(channel: _Channel) -> _Channel:
    return channel


def _error_text(ancillary: list[tuple[int, int, bytes]]) -> str:
    """The error of an error-queue record: its struct sock_extended_err starts with the errno."""
    for level, kind, data in ancillary:
        if (level, kind) in ((socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)) and len(data) >= 4:
            (code,) = struct.unpack("=I", data[:4])
            return _ICMP_ERRORS.get(code, f"{os.strerror(code)} (ICMP)")
    return "unreachable (ICMP)"


def _addr_key(addr: Any) -> tuple[str, int] | None:
    try:
        return str(ipaddress.ip_address(addr[0])), int(addr[1])
    except (TypeError, ValueError, IndexError):
        return None


def _open_socket(family: socket.AddressFamily, local_address: str | None) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER)
        with contextlib.suppress(OSError):  # Linux: ICMP errors of an unconnected socket go to its error queue
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
        wildcard = "::" if family == socket.AF_INET6 else "0.0.0.0"  # noqa: S104 (a client socket's own port)
        sock.bind((local_address or wildcard, 0))
    except BaseException:
        sock.close()
        raise
    return sock


def _sent_by(sock: socket.socket, family: socket.AddressFamily, towards: tuple[str, int]) -> str:
    """The address to name in Via and Contact: the bound one, or for a wildcard socket the address the kernel
    would send from towards the first target (answers follow the datagram's source anyway: `rport`)."""
    bound = str(sock.getsockname()[0]).split("%")[0]  # an IPv6 link-local address comes with its zone
    address = ip_literal(bound)
    if address is not None and not address.is_unspecified:
        return bound
    with socket.socket(family, socket.SOCK_DGRAM) as route, contextlib.suppress(OSError):
        route.connect(towards)  # UDP connect sends nothing: it only picks the route
        return str(route.getsockname()[0]).split("%")[0]
    return bound


def _refusal(target: ProbeTarget, is_ip: bool) -> str | None:
    """Why a target cannot be probed at all (it is never sent), or None."""
    if not is_ip:
        return "host is not an IP address (names are not resolved)"
    if not isinstance(target.port, int) or not 0 < target.port < 65536:
        return "port out of range"
    if not valid_probe_uri(target.uri):
        return "not a sip: URI a probe can carry"
    return None


async def probe_all(targets: Iterable[ProbeTarget], *, timeout: float, cycle: float, retries: int = 1,
                    local_address: str | None = None, rng: random.Random | None = None) -> list[ProbeResult]:
    """Probe every target once within one cycle: a result per target, in the targets' order.

    Each target is sent at a random offset in [0, cycle) (one per slot of the window: `sip.jitter_schedule`), then
    again `retries` times every timeout / (retries + 1) seconds until a final answer; at `timeout` after its
    first send it has error "timeout". The cycle ends when every probe has a result: at most cycle + timeout.
    `local_address` binds the socket of its family to that address (the other family's socket binds the wildcard);
    `rng` makes the schedule reproducible. Targets that cannot be probed (a name, a bad port or URI) get an error
    result and nothing is sent to them."""
    if timeout <= 0 or cycle < 0 or retries < 0:
        raise ValueError("timeout must be positive, cycle and retries not negative")
    local = ip_literal(local_address) if local_address is not None else None
    if local_address is not None and local is None:
        raise ValueError("local_address must be an IP address")
    targets = list(targets)
    state = _Cycle(len(targets), timeout=timeout, retries=retries)
    prefix = secrets.token_hex(10)
    probes: list[tuple[_Probe, ProbeTarget, socket.AddressFamily]] = []
    hosts: dict[str, tuple[str, socket.AddressFamily] | None] = {}  # many rooms can share a host (a registrar)
    for index, target in enumerate(targets):
        if target.host not in hosts:
            address = ip_literal(target.host)
            hosts[target.host] = None if address is None else (
                str(address), socket.AF_INET6 if address.version == 6 else socket.AF_INET)
        host = hosts[target.host]
        refusal = _refusal(target, host is not None)
        if refusal is not None or host is None:
            state.results[index] = ProbeResult(target.key, False, None, None, refusal)
            continue
        call_id = f"{prefix}{index:x}"
        probes.append((_Probe(index, target.key, (host[0], target.port), call_id, f"z9hG4bK{call_id}"),
                       target, host[1]))
        state.expect()
    channels: dict[socket.AddressFamily, _Channel] = {}
    transports: list[asyncio.DatagramTransport] = []
    sender: asyncio.Task[None] | None = None
    try:
        for family in dict.fromkeys(family for _, _, family in probes):
            first = next(probe.addr for probe, _, f in probes if f == family)
            try:
                sock = _open_socket(family, local_address if local is not None and (
                    (local.version == 6) == (family == socket.AF_INET6)) else None)
            except OSError as exc:
                for probe, _, f in probes:
                    if f == family:
                        state.settle(probe.index, ProbeResult(probe.key, False, None, None,
                                                              f"no socket: {exc.strerror or exc}"))
                continue
            channel = _Channel(state, sock, _sent_by(sock, family, first))
            transport, _ = await state.loop.create_datagram_endpoint(functools.partial(_same, channel), sock=sock)
            transports.append(transport)
            channels[family] = channel
        plan = [(offset, probe, target, channels[family])
                for offset, (probe, target, family) in zip(
                    jitter_schedule(len(probes), cycle, rng or random.Random()), probes, strict=True)  # noqa: S311
                if family in channels]
        plan.sort(key=lambda item: item[0])
        sender = asyncio.create_task(_send_on_schedule(plan, min(0.02, max(0.001, cycle / TICKS))))
        await sender  # every probe is sent (or has failed to be): only answers and timers are left
        if state.remaining:
            await state.done
    finally:
        if sender is not None and not sender.done():
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sender
        for channel in channels.values():
            for probe in list(channel.pending.values()):
                if probe.timer is not None:
                    probe.timer.cancel()
        for transport in transports:
            transport.close()
    return [result if result is not None else ProbeResult(target.key, False, None, None, "not probed")
            for result, target in zip(state.results, targets, strict=True)]


async def _send_on_schedule(plan: list[tuple[float, _Probe, ProbeTarget, _Channel]], tick: float) -> None:
    """Send each probe at its offset from now (monotonic clock), to within `tick`: those due within one tick go in
    one wake-up, which lets the loop read answers every BURST sends."""
    start = time.monotonic()
    burst = 0
    for offset, probe, target, channel in plan:
        wait = start + offset - time.monotonic()
        if wait > 0 and (wait > tick or burst == 0):
            await asyncio.sleep(wait)
            burst = 0
        elif burst >= BURST:
            await asyncio.sleep(0)
            burst = 0
        channel.send(probe, target)
        burst += 1


def probe_once(target: ProbeTarget, timeout: float = 2.0, *, retries: int = 1,
               local_address: str | None = None) -> ProbeResult:
    """Probe one target now and wait for its result (a synchronous caller's `probe_all`; not inside a running
    event loop)."""
    return asyncio.run(probe_all([target], timeout=timeout, cycle=0.0, retries=retries,
                                 local_address=local_address))[0]
