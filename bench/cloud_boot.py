"""Boot 20 servers (real hosts) through the cloud gateway: bounded concurrency vs one at a time, same run.

Prints both makespans, their ratio, and the time until all 20 hosts answer SSH. Needs the dev cloud
(`controlplane devcloud up`); everything it makes carries the owner prefix `bench:` and is deleted even on
failure. Run from the repository root: `.venv/bin/python bench/cloud_boot.py [--servers 20] [--workers 10]`.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from controlplane.cloud.domain import IngressRule, OnboardingSpec, Quotas, ServerInfo, ServerSpec
from controlplane.cloud.gateway import CloudGateway
from controlplane.devcloud.cloud import DevCloud


def answers_ssh(key: Path, address: str, *, timeout: float = 120) -> bool:
    """Wait until the host accepts TCP 22 and `ssh root@host true` succeeds (False after `timeout`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection((address, 22), timeout=2).close()
        except OSError:
            time.sleep(0.5)
            continue
        result = subprocess.run(
            ["ssh", "-i", str(key), "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
             "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR", f"root@{address}", "true"],
            capture_output=True, timeout=30, check=False,
        )
        if result.returncode == 0:
            return True
        time.sleep(0.5)
    return False


def boot(gateway: CloudGateway, specs: list[ServerSpec], workers: int) -> tuple[float, list[ServerInfo]]:
    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        servers = list(pool.map(gateway.create_server, specs))
    return time.perf_counter() - started, servers


def all_answer_ssh(key: Path, servers: Iterable[ServerInfo], workers: int) -> None:
    with ThreadPoolExecutor(workers) as pool:
        answers = list(pool.map(lambda s: answers_ssh(key, s.addresses[0]), servers))
    if not all(answers):
        raise SystemExit(f"{answers.count(False)} hosts did not answer SSH")


def delete_all(gateway: CloudGateway, servers: Iterable[ServerInfo], workers: int) -> None:
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(lambda s: gateway.delete_server(s.id), servers))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", type=int, default=20)
    parser.add_argument("--workers", type=int, default=10)
    args = parser.parse_args()

    cloud = DevCloud.default()
    cloud.up()
    admin = CloudGateway.connect(cloud.cloud_name, config_file=cloud.clouds_yaml)
    run = uuid.uuid4().hex[:6].upper()
    workdir = Path(tempfile.mkdtemp(prefix="cloud-boot-"))
    key = workdir / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    spec = OnboardingSpec(f"BENCH{run}", Quotas(instances=args.servers, cores=args.servers, ram_mb=1024 * args.servers,
                                                volumes=0),
                          "10.81.250.0/24", (IngressRule("tcp", 22, 22, "10.0.0.0/8"),),
                          key.with_suffix(".pub").read_text().strip())
    try:
        result = admin.apply(spec)
        assert result.credential is not None
        agency = admin.for_agency(result.credential)

        def specs(phase: str) -> list[ServerSpec]:
            return [ServerSpec(owner=f"bench:{run}:{phase}:{i}", name=f"bench-{phase}-{i}", flavor="small",
                               image="debian-12", network=spec.network_name, key_name=spec.keypair_name)
                    for i in range(args.servers)]

        print(f"booting {args.servers} servers (real nspawn hosts) through the gateway, dev cloud on this machine")
        sequential, servers = boot(agency, specs("seq"), workers=1)
        delete_all(agency, servers, args.workers)

        concurrent, servers = boot(agency, specs("par"), workers=args.workers)
        delete_all(agency, servers, args.workers)

        # Time to SSH measured as one span: boot with bounded concurrency, then every host takes TCP 22 and
        # answers `ssh true`.
        started = time.perf_counter()
        _, servers = boot(agency, specs("ssh"), workers=args.workers)
        all_answer_ssh(key, servers, args.workers)
        until_ssh = time.perf_counter() - started
        delete_all(agency, servers, args.workers)
        agency.close()

        print(f"one at a time:            {sequential:7.1f} s  ({sequential / args.servers:.2f} s per server)")
        print(f"{args.workers:2d} at a time:             {concurrent:7.1f} s")
        print(f"ratio (sequential/concurrent): {sequential / concurrent:.1f}x")
        print(f"all {args.servers} ACTIVE and answering SSH: {until_ssh:7.1f} s (concurrent boot + ssh true)")
    finally:
        # Everything the run made is in the agency's project (servers owned `bench:<run>:...`): remove it all.
        admin.offboard(spec)
        admin.close()


if __name__ == "__main__":
    main()
