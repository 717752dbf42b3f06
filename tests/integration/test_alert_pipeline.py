"""The alert pipeline end to end, on real daemons: `scripts/monitoring up` starts Prometheus and Alertmanager on
127.0.0.1; Prometheus scrapes a real `controlplane serve` (its own SQLite databases under tmp_path, its durable
engine probing the catalogue's rooms every second) whose one room does not answer (a closed UDP port on loopback),
evaluates monitoring/alerts and hands RoomDown to Alertmanager, which lists it with its site and agency.

The alerts are a copy of monitoring/alerts with RoomDown's `for` cut to 1s, the intervals 1s.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml
from components import missing
from servers import free_port, run_controlplane, server_env, stop_process, wait_healthy

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = REPO_ROOT / "scripts" / "monitoring"
MONITORING = REPO_ROOT / "monitoring"
SERVER_START_SECONDS = 60
# From the server's start: its engine starts, probes, recounts the rooms; Prometheus scrapes, evaluates, sends.
ALERT_SECONDS = 45
# One site, one room of MOIS whose endpoint is a UDP port of loopback nobody listens on.
CATALOGUE = """\
version: 1
sites:
- {{code: sejong-1, name: Government Complex Sejong 1, kind: complex, region: sejong, address: Sejong}}
rooms:
- code: sejong-1-101
  name: Conference room 101
  site: sejong-1
  agency: MOIS
  building: "1"
  floor: 1
  capacity: 10
  endpoint: {{uri: "sip:sejong-1-101@vc.test", address: 127.0.0.1, port: {port}}}
"""


def _binaries() -> None:
    if shutil.which("prometheus") is None or shutil.which("promtool") is None:
        missing("promtool", "prometheus or promtool is not on PATH")
    if shutil.which("prometheus-alertmanager") is None:
        missing("alertmanager", "prometheus-alertmanager is not on PATH")


def _closed_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Monitoring:
    dir: Path
    prometheus: str
    alertmanager: str

    def script(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(SCRIPT), *args, "--dir", str(self.dir)], capture_output=True, text=True,
                              timeout=120, check=False)

    def pids(self) -> dict[str, int]:
        return {name: int((self.dir / f"{name}.pid").read_text()) for name in ("prometheus", "alertmanager")}


def _ok(result: subprocess.CompletedProcess[str]) -> str:
    command = " ".join(result.args)
    assert result.returncode == 0, f"$ {command}: exit {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def _rules_dir(tmp_path: Path) -> Path:
    """monitoring/rules and monitoring/alerts, with RoomDown's `for` cut to 1s."""
    root = tmp_path / "rules-dir"
    for sub, pattern in (("rules", "*.rules.yml"), ("alerts", "*.alerts.yml")):
        (root / sub).mkdir(parents=True)
        for path in (MONITORING / sub).glob(pattern):
            shutil.copy(path, root / sub / path.name)
    alerts = root / "alerts" / "vc_network.alerts.yml"
    doc = yaml.safe_load(alerts.read_text(encoding="utf-8"))
    rule = next(rule for group in doc["groups"] for rule in group["rules"] if rule.get("alert") == "RoomDown")
    rule["for"] = "1s"
    alerts.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    return root


def _until(what: str, check: Callable[[], Any], seconds: float, diagnose: Callable[[], str]) -> Any:
    """check()'s first truthy answer within `seconds`, else fail with what was awaited and the diagnosis."""
    deadline = time.monotonic() + seconds
    while True:
        answer = check()
        if answer:
            return answer
        if time.monotonic() > deadline:
            pytest.fail(f"{what} not within {seconds} s\n{diagnose()}", pytrace=False)
        time.sleep(0.25)


def _gone(pid: int) -> bool:
    """No such process, or only its exit status is left (a zombie its new parent has not reaped yet)."""
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@dataclass(frozen=True)
class Product:
    address: str
    process: subprocess.Popen[bytes]
    log: Path
    started: float


@pytest.fixture
def product(tmp_path: Path) -> Iterator[Product]:
    """A real `controlplane serve` on a free port of 127.0.0.1 with its own SQLite databases, the agencies and a
    one-room catalogue synced, its engine probing every second."""
    _binaries()  # before the server's start: nothing to start when the daemons are missing
    root = tmp_path / "cp"
    (root / "rooms").mkdir(parents=True)
    (root / "rooms" / "catalogue.yml").write_text(CATALOGUE.format(port=_closed_udp_port()), encoding="utf-8")
    env = server_env(root, env="test", workflows="true", cloud="", metrics_refresh_seconds="3600",
                     rooms_catalogue_dir=str(root / "rooms"), rooms_allowed_networks="127.0.0.0/8",
                     rooms_probe_seconds="1", rooms_probe_timeout="0.5")
    run_controlplane(root, env, "init")  # the database, the agencies (the room's MOIS among them), an admin
    run_controlplane(root, env, "rooms", "sync")
    port = free_port()
    log = root / "server.log"
    with log.open("wb") as handle:
        process = subprocess.Popen([sys.executable, "-m", "controlplane", "serve", "--host", "127.0.0.1",
                                    "--port", str(port)], cwd=root, env=env, stdout=handle,
                                   stderr=subprocess.STDOUT)
    try:
        yield Product(f"127.0.0.1:{port}", process, log, time.monotonic())
    finally:
        stop_process(process)


def test_a_room_down_in_the_product_reaches_alertmanager(tmp_path: Path, product: Product) -> None:
    ports = {"prometheus": free_port(), "alertmanager": free_port()}
    monitoring = Monitoring(tmp_path / "monitoring", f"http://127.0.0.1:{ports['prometheus']}",
                            f"http://127.0.0.1:{ports['alertmanager']}")
    up = ("up", "--target", product.address,
          "--prometheus-port", str(ports["prometheus"]), "--alertmanager-port", str(ports["alertmanager"]),
          "--scrape-interval", "1s", "--evaluation-interval", "1s", "--rules-dir", str(_rules_dir(tmp_path)))
    pids: dict[str, int] = {}
    try:
        out = _ok(monitoring.script(*up))
        assert monitoring.prometheus in out and monitoring.alertmanager in out, out
        pids = monitoring.pids()
        # Up again: the same two daemons, their configs reloaded; nothing else runs on this directory.
        _ok(monitoring.script(*up))
        assert monitoring.pids() == pids
        ours = [p for p in psutil.process_iter(["cmdline"]) if str(monitoring.dir) in " ".join(p.info["cmdline"] or [])]
        assert sorted(p.pid for p in ours) == sorted(pids.values())
        status = monitoring.script("status")
        assert status.returncode == 0 and status.stdout.count(", ready") == 2, status.stdout + status.stderr

        def diagnose() -> str:
            try:
                targets = httpx.get(f"{monitoring.prometheus}/api/v1/targets", timeout=5).text
                alerts = httpx.get(f"{monitoring.prometheus}/api/v1/alerts", timeout=5).text
            except httpx.HTTPError as error:
                targets = alerts = f"(Prometheus did not answer: {error!r})"
            logs = "".join(f"--- {name}\n{path.read_text(errors='replace')[-3000:]}\n" for name, path in (
                ("prometheus.log", monitoring.dir / "prometheus.log"),
                ("alertmanager.log", monitoring.dir / "alertmanager.log"), ("server.log", product.log)))
            return f"targets: {targets}\nalerts in Prometheus: {alerts}\n{logs}"

        # Prometheus scrapes the product: up == 1, with the product's own series.
        wait_healthy(f"http://{product.address}", product.process, product.log, seconds=SERVER_START_SECONDS)

        def product_scraped() -> bool:
            response = httpx.get(f"{monitoring.prometheus}/api/v1/query", timeout=5, params={
                "query": f'up{{job="controlplane", instance="{product.address}"}} == 1 '
                         f'and on (instance) count by (instance) (controlplane_http_requests_total) > 0'})
            response.raise_for_status()
            return bool(response.json()["data"]["result"])

        _until(f"up == 1 with the product's own series for {product.address}", product_scraped, 30, diagnose)

        # The product probes its room, finds it down and exports it; Prometheus fires RoomDown to Alertmanager.
        def room_down_alerts() -> list[dict[str, Any]]:
            response = httpx.get(f"{monitoring.alertmanager}/api/v2/alerts", timeout=5,
                                 params={"filter": 'alertname="RoomDown"'})
            response.raise_for_status()
            found: list[dict[str, Any]] = response.json()
            return found

        left = ALERT_SECONDS - (time.monotonic() - product.started)
        alerts = _until("RoomDown in Alertmanager", room_down_alerts, max(left, 5), diagnose)
        print(f"RoomDown reached Alertmanager {time.monotonic() - product.started:.1f} s after the server started")
        assert len(alerts) == 1, alerts
        alert = alerts[0]
        assert alert["labels"] == {"alertname": "RoomDown", "severity": "warning", "job": "controlplane",
                                   "site": "sejong-1", "agency": "MOIS"}
        assert alert["status"]["state"] == "active"
        assert alert["annotations"]["summary"] == "1 room(s) of MOIS at sejong-1 down"
        assert alert["annotations"]["runbook_url"] == "https://controlplane.example.gov/runbooks#roomdown"
    finally:
        down = monitoring.script("down")
    assert down.returncode == 0, down.stdout + down.stderr
    for name, pid in pids.items():
        assert _gone(pid), f"{name} (pid {pid}) still runs after down"
    assert not (monitoring.dir / "prometheus.pid").exists() and not (monitoring.dir / "alertmanager.pid").exists()
    assert monitoring.script("status").returncode == 3


def test_status_and_down_with_nothing_running(tmp_path: Path) -> None:
    monitoring = Monitoring(tmp_path / "monitoring", "", "")
    status = monitoring.script("status")
    assert status.returncode == 3 and "prometheus: not running" in status.stdout, status.stdout + status.stderr
    assert _ok(monitoring.script("down")).count("not running") == 2
    # A PID file left by a daemon that is gone (or a PID reused by another process) is not taken for it.
    monitoring.dir.mkdir(parents=True)
    (monitoring.dir / "prometheus.pid").write_text(f"{os.getpid()}\n")
    assert "prometheus: not running" in monitoring.script("status").stdout
    assert not (monitoring.dir / "prometheus.pid").exists()
