"""SIP peers for the room prober's tests and benchmark: real sipp room endpoints, and a pool of many endpoints in
one process.

sipp (Debian `sip-tester`, 3.6.1) answers OPTIONS with 200 through tests/sip/uas_options.xml. It runs in the
foreground (`-nostdin`, output to a log) and is tracked by the pid of the process we started: with `-bg` sipp
forks, the parent prints `Background mode - PID=[n]` and exits (status 99), so the pid we started is gone at once
and the one to stop has to be read from its output. `-ci` keeps its control socket (UDP, default 0.0.0.0:8888) on
loopback; sipp also binds two media ports from `-mp` (it takes the next ones when they are busy).

    with sipp_peers(3, tmp_path) as peers:          # SippPeer(port, control_port, pid, ...)
        stop_sipp(peers[0])                          # SIGTERM by pid, SIGKILL if it lingers

The endpoint pool answers SIP OPTIONS on many UDP ports from one asyncio loop (200 by default; per port a status,
or silence), optionally with a flood of junk first, only retransmissions, or a 100 Trying first; it records when
each request came. For the benchmark it can also answer the same request over TCP on the same port numbers and a
DNS query over UDP (the blackbox exporter's probers), and it runs as its own process:

    .venv/bin/python tests/sip_peers.py pool --count 5000 --host 127.0.0.1 [--tcp] [--dns]
    # prints one JSON line {"pid": ..., "ports": [...]}, answers until SIGTERM or its stdin closes
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import functools
import json
import os
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import psutil

UAS_OPTIONS = Path(__file__).resolve().parent / "sip" / "uas_options.xml"
SIPP = "/usr/bin/sipp"
REASONS = {100: "Trying", 200: "OK", 403: "Forbidden", 404: "Not Found", 480: "Temporarily Unavailable",
           486: "Busy Here", 500: "Server Internal Error", 503: "Service Unavailable", 603: "Decline"}


# --- sipp ---------------------------------------------------------------------------------------------------------

def sipp_path() -> str | None:
    """sipp's path, or None when it is not installed."""
    return shutil.which("sipp") or (SIPP if os.access(SIPP, os.X_OK) else None)


def free_udp_port(host: str = "127.0.0.1") -> int:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass
class SippPeer:
    """A running sipp room endpoint: it answers OPTIONS at host:port; `pid` is the sipp process."""

    host: str
    port: int
    control_port: int
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None


def _udp_ports(pid: int) -> set[int]:
    try:
        return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="udp") if c.laddr}
    except psutil.Error:
        return set()


def start_sipp(workdir: Path, *, host: str = "127.0.0.1", scenario: Path = UAS_OPTIONS,
               seconds: float = 10) -> SippPeer:
    """A sipp UAS on free ports of `host`, answering OPTIONS per `scenario`; returned once its SIP port is bound.
    RuntimeError (with its log) when it exits or does not bind in time."""
    sipp = sipp_path()
    if sipp is None:
        raise FileNotFoundError("sipp is not installed")
    workdir.mkdir(parents=True, exist_ok=True)
    for _attempt in range(3):  # a free port can be taken by someone else between our check and sipp's bind
        port, control_port, media_port = (free_udp_port(host) for _ in range(3))
        log = workdir / f"sipp-{port}.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sipp, "-sf", str(scenario), "-i", host, "-p", str(port), "-ci", host, "-cp", str(control_port),
                 "-mi", host, "-mp", str(media_port), "-nostdin", "-skip_rlimit"],
                cwd=workdir, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)
        peer = SippPeer(host, port, control_port, process, log)
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and process.poll() is None:
            if port in _udp_ports(process.pid):
                return peer
            time.sleep(0.02)
        stop_sipp(peer)
        if time.monotonic() < deadline:
            continue  # it exited at once: most likely a port taken meanwhile
        break
    raise RuntimeError(f"sipp did not start answering on {host}:{port}:\n{log.read_text(errors='replace')[-2000:]}")


def stop_sipp(peer: SippPeer, *, seconds: float = 5) -> None:
    """Stop the peer by its pid: SIGTERM, then SIGKILL if it is still there after `seconds`."""
    if peer.process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(peer.pid, signal.SIGTERM)
        try:
            peer.process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(peer.pid, signal.SIGKILL)
            peer.process.wait(timeout=seconds)


@contextlib.contextmanager
def sipp_peers(count: int, workdir: Path, *, host: str = "127.0.0.1") -> Iterator[list[SippPeer]]:
    """`count` sipp room endpoints, stopped by pid when the block ends (also on failure)."""
    peers: list[SippPeer] = []
    try:
        for _ in range(count):
            peers.append(start_sipp(workdir, host=host))
        yield peers
    finally:
        for peer in peers:
            stop_sipp(peer)


# --- the endpoint pool ----------------------------------------------------------------------------------------------

def _headers(head: bytes) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    lines = head.replace(b"\r\n", b"\n").split(b"\n")
    pairs = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if colon:
            pairs.append((name.strip(), value.strip()))
    return lines[0], pairs


_LONG = {b"v": b"via", b"f": b"from", b"t": b"to", b"i": b"call-id"}


def answer_options(request: bytes, status: int = 200, *, tag: str = "pool") -> bytes | None:
    """The response to a SIP OPTIONS request (RFC 3261 8.2.6: Via, From, To with a tag, Call-ID and CSeq copied),
    or None when `request` is no OPTIONS request."""
    head = request.split(b"\r\n\r\n", 1)[0]
    start, pairs = _headers(head)
    if not start.startswith(b"OPTIONS ") or not start.endswith(b" SIP/2.0"):
        return None
    copied = []
    for name, value in pairs:
        long = _LONG.get(name.lower(), name.lower())
        if long == b"via":
            copied.append(b"Via: " + value)
        elif long == b"from":
            copied.append(b"From: " + value)
        elif long == b"to":
            copied.append(b"To: " + value + (b"" if b";tag=" in value else f";tag={tag}".encode()))
        elif long == b"call-id":
            copied.append(b"Call-ID: " + value)
        elif long == b"cseq":
            copied.append(b"CSeq: " + value)
    status_line = f"SIP/2.0 {status} {REASONS.get(status, 'Whatever')}".encode()
    return b"\r\n".join([status_line, *copied, b"Content-Length: 0", b"", b""])


def junk_for(request: bytes) -> list[bytes]:
    """Datagrams a prober must ignore, made to look as close as possible to the answer to `request`: garbage, a
    request, responses without or with a foreign Call-ID, with its Call-ID but another branch or method, bad status
    lines, bytes that are not UTF-8, a big one."""
    good = answer_options(request) or b""
    _, pairs = _headers(request.split(b"\r\n\r\n", 1)[0])
    call_id = next((v for n, v in pairs if n.lower() in (b"call-id", b"i")), b"x")
    via = next((v for n, v in pairs if n.lower() in (b"via", b"v")), b"x")
    return [
        b"",
        b"\x00\xff\xfe garbage \x80\x81",
        b"SIP/2.0 200 OK\r\n\r\n",
        b"SIP/2.0 200 OK\r\nCall-ID: \r\n\r\n",
        good.replace(call_id, b"someone-else"),
        good.replace(via, b"SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bKother"),
        good.replace(b"OPTIONS", b"INVITE"),
        good.replace(b"SIP/2.0 200", b"SIP/2.0 2000"),
        good.replace(b"SIP/2.0 200", b"SIP/3.0 200"),
        good.replace(b"SIP/2.0 200", b"SIP/2.0 099"),
        good.replace(call_id, call_id + b"\xff\xfe\x80"),
        request,
        good[: len(good) // 2],
        b"SIP/2.0 200 OK\r\n" + b"X-Padding: " + b"a" * 60_000 + b"\r\n\r\n",
    ]


def answer_dns(query: bytes) -> bytes | None:
    """A NOERROR answer without records to a DNS query (header and first question echoed), or None."""
    if len(query) < 17 or query[2] & 0x80:
        return None
    qdcount = struct.unpack("!H", query[4:6])[0]
    if qdcount < 1:
        return None
    end = 12
    while end < len(query) and query[end] != 0:
        end += 1 + query[end]
    end += 5  # the root label, QTYPE, QCLASS
    if end > len(query):
        return None
    flags = 0x8180 | (query[2] & 0x01) << 8
    return query[:2] + struct.pack("!HHHHH", flags, 1, 0, 0, 0) + query[12:end]


@dataclass
class PoolSettings:
    """What the pool answers: `status` everywhere unless `statuses` names a port's; nothing on `silent` ports;
    `junk_first` sends junk_for(request) before each answer; `drop_first` ignores the first request of each
    Call-ID (only a retransmission is answered); `trying_first` sends 100 Trying before the final answer."""

    status: int = 200
    statuses: dict[int, int] = field(default_factory=dict)
    silent: set[int] = field(default_factory=set)
    junk_first: bool = False
    drop_first: bool = False
    trying_first: bool = False
    dns: bool = False


class _PoolPort(asyncio.DatagramProtocol):
    def __init__(self, pool: EndpointPool, port: int) -> None:
        self.pool, self.port = pool, port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)  # asyncio's own class does not derive from it

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.pool.handle(self.port, data, addr, self.transport)

    def error_received(self, exc: Exception) -> None:
        self.pool.errors += 1


class EndpointPool:
    """Many SIP endpoints in one asyncio loop: one UDP socket per port (and, with `tcp`, a TCP listener on the same
    port number). `arrivals` holds (time.monotonic(), port, Call-ID) of every OPTIONS received."""

    def __init__(self, count: int, host: str = "127.0.0.1", settings: PoolSettings | None = None, *,
                 tcp: bool = False) -> None:
        self.count, self.host, self.tcp = count, host, tcp
        self.settings = settings or PoolSettings()
        self.ports: list[int] = []
        self.arrivals: list[tuple[float, int, bytes]] = []
        self.requests: Counter[bytes] = Counter()
        self.errors = 0
        self.tcp_answered = 0
        self.dns_answered = 0
        self._transports: list[asyncio.DatagramTransport] = []
        self._servers: list[asyncio.Server] = []

    async def start(self, *, as_many_as_allowed: bool = False) -> list[int]:
        """Bind the ports; with `as_many_as_allowed`, stop without error when the process runs out of files."""
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        while len(self.ports) < self.count:
            try:
                sock = socket.socket(family, socket.SOCK_DGRAM)
            except OSError as exc:
                if as_many_as_allowed and exc.errno in (errno.EMFILE, errno.ENFILE) and self.ports:
                    break
                raise
            sock.bind((self.host, 0))
            port = int(sock.getsockname()[1])
            if self.tcp:
                try:
                    server = await asyncio.start_server(self._tcp_client, self.host, port, backlog=512)
                except OSError as exc:
                    sock.close()
                    if exc.errno in (errno.EMFILE, errno.ENFILE):
                        if as_many_as_allowed and self.ports:
                            break
                        raise
                    continue  # that number is taken for TCP: another one
                self._servers.append(server)
            transport, _ = await loop.create_datagram_endpoint(functools.partial(_PoolPort, self, port), sock=sock)
            self._transports.append(transport)
            self.ports.append(port)
        return self.ports

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        for server in self._servers:
            server.close()
        self._transports.clear()
        self._servers.clear()

    async def __aenter__(self) -> EndpointPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def handle(self, port: int, data: bytes, addr: tuple[str, int], transport: asyncio.DatagramTransport) -> None:
        settings = self.settings
        if not data.startswith(b"OPTIONS "):
            answer = answer_dns(data) if settings.dns else None
            if answer is not None:
                self.dns_answered += 1
                transport.sendto(answer, addr)
            return
        _, pairs = _headers(data.split(b"\r\n\r\n", 1)[0])
        call_id = next((v for n, v in pairs if n.lower() in (b"call-id", b"i")), b"")
        self.arrivals.append((time.monotonic(), port, call_id))
        self.requests[call_id] += 1
        if port in settings.silent or (settings.drop_first and self.requests[call_id] == 1):
            return
        status = settings.statuses.get(port, settings.status)
        answer = answer_options(data, status)
        if answer is None:
            return
        if settings.junk_first:
            for junk in junk_for(data):
                transport.sendto(junk, addr)
        if settings.trying_first:
            trying = answer_options(data, 100)
            if trying is not None:
                transport.sendto(trying, addr)
        transport.sendto(answer, addr)

    async def _tcp_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            answer = answer_options(request, self.settings.status)
            if answer is not None:
                writer.write(answer)
                await writer.drain()
                self.tcp_answered += 1
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, ConnectionError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def _serve_pool(args: argparse.Namespace) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = args.count * (2 if args.tcp else 1) + 256  # a UDP socket (and a TCP listener) per port, and clients
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard),
                                                    hard))
    pool = EndpointPool(args.count, args.host, PoolSettings(dns=args.dns), tcp=args.tcp)
    ports = await pool.start(as_many_as_allowed=True)
    print(json.dumps({"pid": os.getpid(), "ports": ports}), flush=True)
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()

    def stopping() -> None:
        if not stop.done():
            stop.set_result(None)

    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping)
    # Also stop when the parent goes away (its end of our stdin closes).
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    eof = asyncio.ensure_future(reader.read())
    eof.add_done_callback(lambda _: stopping())
    await stop
    eof.cancel()
    pool.close()
    print(json.dumps({"options": len(pool.arrivals), "tcp": pool.tcp_answered, "dns": pool.dns_answered}),
          flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="SIP peers for the room prober's tests and benchmark")
    sub = parser.add_subparsers(dest="command", required=True)
    pool = sub.add_parser("pool", help="answer SIP OPTIONS on many UDP ports (and TCP, DNS) until SIGTERM")
    pool.add_argument("--count", type=int, default=100)
    pool.add_argument("--host", default="127.0.0.1")
    pool.add_argument("--tcp", action="store_true", help="also answer OPTIONS over TCP on the same port numbers")
    pool.add_argument("--dns", action="store_true", help="also answer DNS queries on the UDP ports")
    args = parser.parse_args()
    asyncio.run(_serve_pool(args))


if __name__ == "__main__":
    main()
