"""5,000 SIP room endpoints on loopback: one cycle of the room prober vs Debian's blackbox exporter, same run.

The endpoints are the endpoint pool of tests/sip_peers.py in a process of its own (its CPU is nobody's figure):
one UDP socket per port answering SIP OPTIONS with 200, and a TCP listener on the same port numbers answering the
same request over TCP; `--dns` makes its UDP ports answer DNS queries too.

What is measured, one after the other on the same targets:
- **prober:** `controlplane.rooms.sip_probe.probe_all` over all targets, one cycle (`--cycle` seconds of jitter
  window, `--timeout`, 1 retry, socket bound to 127.0.0.1): the cycle's wall time and this process's CPU seconds
  (time.process_time: user + system of the prober and nothing else; the pool runs elsewhere).
- **blackbox:** `prometheus-blackbox-exporter` (Debian, 0.23) on 127.0.0.1 with a config file in a temp dir, asked
  `/probe?module=...&target=127.0.0.1:PORT` once per target by `--concurrency` concurrent HTTP requests from this
  process (httpx); its CPU seconds from /proc via psutil for its pid, over exactly those requests. The HTTP client's
  CPU is not counted for blackbox (as the prober's scheduling is counted for the prober: generous to blackbox).
  Blackbox has no SIP and no UDP request/response prober other than DNS, so the baseline is its closest module,
  `tcp` with `query_response`: it sends the same SIP OPTIONS request (over TCP, RFC 3261 18) and expects
  `SIP/2.0 200`, i.e. the same question and the same success test. `--dns` adds its `dns` module (a UDP query,
  not SIP; same transport, different question) as a second reference.
Each side first does a small warm-up (not counted). Every probe must succeed, or the script says which and exits 1.

Run from the repository root: `.venv/bin/python bench/sip_probes.py [--count 5000] [--cycle 10] [--dns]`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import yaml

from controlplane.rooms.sip_probe import ProbeResult, ProbeTarget, probe_all

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO / "tests" / "sip_peers.py"
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
HOST = "127.0.0.1"
WARMUP = 50
# The request blackbox's tcp module sends: the prober's OPTIONS, over TCP. Its `send` is written with "\n"
# appended (prober/tcp.go: fmt.Fprintf(conn, "%s\n", send)), so the text ends in "\r" to close the header with
# CRLF CRLF. A module is static: every probe carries this same Call-ID.
SIP_OVER_TCP = ("OPTIONS sip:room@vc.go.kr SIP/2.0\r\n"
                "Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bKblackbox\r\n"
                "Max-Forwards: 70\r\n"
                "From: <sip:probe@127.0.0.1>;tag=blackbox\r\n"
                "To: <sip:room@vc.go.kr>\r\n"
                "Call-ID: blackbox-probe\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Contact: <sip:probe@127.0.0.1:5060;transport=tcp>\r\n"
                "Content-Length: 0\r\n"
                "\r")


def blackbox_config(timeout: float) -> dict[str, object]:
    ms = f"{int(timeout * 1000)}ms"
    return {"modules": {
        "sip_options_tcp": {"prober": "tcp", "timeout": ms, "tcp": {
            "preferred_ip_protocol": "ip4", "ip_protocol_fallback": False,
            "query_response": [{"send": SIP_OVER_TCP}, {"expect": "^SIP/2\\.0 200 "}]}},
        "dns_udp": {"prober": "dns", "timeout": ms, "dns": {
            "preferred_ip_protocol": "ip4", "ip_protocol_fallback": False, "transport_protocol": "udp",
            "query_name": "room.vc.go.kr", "query_type": "A", "valid_rcodes": ["NOERROR"]}},
    }}


def free_tcp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def stop(process: subprocess.Popen[bytes] | None) -> None:
    """Stop a process we started, by its pid: SIGTERM, SIGKILL after 10 s."""
    if process is None or process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def start_pool(count: int, dns: bool) -> tuple[subprocess.Popen[bytes], list[int]]:
    command = [sys.executable, str(PEERS), "pool", "--count", str(count), "--host", HOST, "--tcp"]
    if dns:
        command.append("--dns")
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line:
        stop(process)
        raise SystemExit("the endpoint pool did not start")
    return process, [int(port) for port in json.loads(line)["ports"]]


def targets_for(ports: list[int]) -> list[ProbeTarget]:
    return [ProbeTarget(f"room-{i}", HOST, port, f"sip:room{i}@vc.go.kr") for i, port in enumerate(ports)]


def prober_cycle(targets: list[ProbeTarget], *, cycle: float, timeout: float) -> tuple[float, float,
                                                                                        list[ProbeResult]]:
    """One cycle: (wall seconds, CPU seconds of this process, results)."""
    cpu, wall = time.process_time(), time.perf_counter()
    results = asyncio.run(probe_all(targets, timeout=timeout, cycle=cycle, retries=1, local_address=HOST))
    return time.perf_counter() - wall, time.process_time() - cpu, results


def start_blackbox(work: Path, timeout: float) -> tuple[subprocess.Popen[bytes], str]:
    config = work / "blackbox.yml"
    config.write_text(yaml.safe_dump(blackbox_config(timeout), sort_keys=False))
    check = subprocess.run([BLACKBOX, f"--config.file={config}", "--config.check"], capture_output=True, text=True,
                           check=False)
    if check.returncode != 0:
        raise SystemExit(f"blackbox refuses its config:\n{check.stdout}{check.stderr}")
    port = free_tcp_port()
    log = (work / "blackbox.log").open("wb")
    process = subprocess.Popen([BLACKBOX, f"--config.file={config}", f"--web.listen-address={HOST}:{port}",
                                "--log.level=warn"], cwd=work, stdin=subprocess.DEVNULL, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://{HOST}:{port}"
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"blackbox exited with {process.returncode}: {(work / 'blackbox.log').read_text()}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"{url}/-/healthy", timeout=1).status_code == 200:
                return process, url
        time.sleep(0.1)
    stop(process)
    raise SystemExit("blackbox did not answer /-/healthy")


async def _drive(url: str, module: str, ports: list[int], concurrency: int) -> list[int]:
    """Ask blackbox to probe every port; the ports whose probe did not succeed."""
    failed: list[int] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    queue: asyncio.Queue[int] = asyncio.Queue()
    for port in ports:
        queue.put_nowait(port)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30) as client:
        async def worker() -> None:
            while not queue.empty():
                port = queue.get_nowait()
                response = await client.get("/probe", params={"module": module, "target": f"{HOST}:{port}"})
                if response.status_code != 200 or "\nprobe_success 1\n" not in response.text:
                    failed.append(port)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


def blackbox_run(process: subprocess.Popen[bytes], url: str, module: str, ports: list[int],
                 concurrency: int) -> tuple[float, float, list[int]]:
    """Probe every port through blackbox: (wall seconds, blackbox's CPU seconds, failed ports)."""
    me = psutil.Process(process.pid)
    before = me.cpu_times()
    wall = time.perf_counter()
    failed = asyncio.run(_drive(url, module, ports, concurrency))
    wall = time.perf_counter() - wall
    after = me.cpu_times()
    return wall, (after.user - before.user) + (after.system - before.system), failed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, round(share * len(ordered)) - 1))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=5000, help="SIP endpoints (ports) on loopback")
    parser.add_argument("--cycle", type=float, default=10.0, help="the prober's jitter window, seconds")
    parser.add_argument("--timeout", type=float, default=2.0, help="per probe, both sides, seconds")
    parser.add_argument("--concurrency", type=int, default=20, help="concurrent /probe requests to blackbox")
    parser.add_argument("--dns", action="store_true", help="also measure blackbox's dns module (UDP, not SIP)")
    args = parser.parse_args()
    if not os.access(BLACKBOX, os.X_OK):
        raise SystemExit(f"{BLACKBOX} is missing: `scripts/setup --test` (Debian's prometheus-blackbox-exporter)")

    work = Path(tempfile.mkdtemp(prefix="bench-sip-"))
    pool: subprocess.Popen[bytes] | None = None
    blackbox: subprocess.Popen[bytes] | None = None
    failures = False
    try:
        pool, ports = start_pool(args.count, args.dns)
        count = len(ports)
        print(f"targets: {count} SIP endpoints on {HOST} (UDP and TCP on each port), endpoint pool pid {pool.pid}"
              + ("" if count == args.count else f" (asked for {args.count}: the OS allowed {count})"))
        targets = targets_for(ports)

        # The prober: a warm-up cycle over a few targets, then one full cycle.
        prober_cycle(targets[:WARMUP], cycle=0.2, timeout=args.timeout)
        wall, cpu, results = prober_cycle(targets, cycle=args.cycle, timeout=args.timeout)
        bad = [r for r in results if not r.ok]
        rtts = [r.rtt for r in results if r.rtt is not None]
        prober_rate = count / cpu
        print(f"prober: one cycle of {count} probes (window {args.cycle:g} s, timeout {args.timeout:g} s, 1 retry): "
              f"wall {wall:.2f} s, CPU {cpu:.3f} s, {count - len(bad)} ok -> {prober_rate:,.0f} probes per CPU-second")
        if rtts:
            print(f"        rtt p50 {statistics.median(rtts) * 1000:.2f} ms, "
                  f"p95 {percentile(rtts, 0.95) * 1000:.2f} ms, max {max(rtts) * 1000:.2f} ms")
        if bad:
            failures = True
            print(f"        FAILED {len(bad)}: {bad[:5]}")

        blackbox, url = start_blackbox(work, args.timeout)
        version = subprocess.run([BLACKBOX, "--version"], capture_output=True, text=True, check=False)
        print(f"blackbox: {(version.stdout or version.stderr).splitlines()[0]}, pid {blackbox.pid}, {url}, "
              f"{args.concurrency} concurrent /probe requests")
        modules = [("sip_options_tcp", "tcp prober, query_response: the same SIP OPTIONS over TCP, expects 200")]
        if args.dns:
            modules.append(("dns_udp", "dns prober over UDP: an A query, not SIP (same transport as the prober)"))
        rates: dict[str, float] = {}
        for module, what in modules:
            _, _, warm_failed = blackbox_run(blackbox, url, module, ports[:WARMUP], args.concurrency)
            bb_wall, bb_cpu, failed = blackbox_run(blackbox, url, module, ports, args.concurrency)
            rates[module] = count / bb_cpu
            print(f"blackbox {module} ({what}): {count} probes, wall {bb_wall:.2f} s, blackbox CPU {bb_cpu:.3f} s, "
                  f"{count - len(failed)} succeeded -> {rates[module]:,.0f} probes per CPU-second")
            if failed or warm_failed:
                failures = True
                print(f"        FAILED {len(failed)}: ports {failed[:5]}")

        for module, rate in rates.items():
            print(f"ratio prober / blackbox {module}: {prober_rate / rate:.1f}x probes per CPU-second")
        main_ratio = prober_rate / rates["sip_options_tcp"]
        print(f"goals: a full cycle well inside 60 s: {'met' if wall < 60 else 'NOT met'} ({wall:.1f} s); "
              f">= 2x blackbox's probes per CPU-second: {'met' if main_ratio >= 2 else 'NOT met'} "
              f"({main_ratio:.1f}x)")
    finally:
        stop(blackbox)
        if pool is not None and pool.poll() is None:
            stop(pool)
        shutil.rmtree(work, ignore_errors=True)
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
