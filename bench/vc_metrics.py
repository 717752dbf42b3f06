"""Benchmark: GET /metrics with 5,000 rooms in the VC network's catalogue, against the same scrape without them.

    .venv/bin/python bench/vc_metrics.py [--rooms 5000] [--requests 300]

It migrates a fresh SQLite database, seeds the agencies, inserts the rooms (spread over 60 sites and every agency,
a quarter of them down, a few out of service) and two bridges, fills the rooms' metrics cache the way the server
does (`refresh_rooms`, after each probe cycle and periodically), and times, interleaved in one run,

  A  GET /metrics through the real app (in-process ASGI via starlette's TestClient) with the rooms' cache filled,
  B  the baseline: the same GET /metrics with the rooms' cache empty (every other metric set of the product).

A - B is what the VC network adds to a scrape; the goal is A's p95 under 100 ms. The cache refresh (one SQL
aggregate, off the scrape path) is timed too. The scrape must carry exactly the rooms inserted, or the script stops
with exit status 1. Times are printed, never asserted.
"""

from __future__ import annotations

import argparse
import random
import re
import statistics
import sys
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import insert, select

from controlplane.app import create_app
from controlplane.auth import service as auth_service
from controlplane.auth.models import Agency
from controlplane.clock import FixedClock
from controlplane.config import Settings
from controlplane.db import make_engine, make_sessionmaker, transaction
from controlplane.migrations import upgrade
from controlplane.rooms.domain import REGIONS
from controlplane.rooms.metrics import RoomMetrics, RoomsSnapshot, refresh_rooms
from controlplane.rooms.models import Bridge, Room, Site

with warnings.catch_warnings():  # starlette's nudge towards httpx2: not this benchmark's business
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

NOW = datetime(2014, 7, 1, 3, 0, tzinfo=UTC)
SITES = 60
ROOM_LINE = re.compile(r'^controlplane_rooms\{[^}]*\} (\d+\.\d+)$', re.M)


def populate(url: str, rooms: int) -> None:
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    rng = random.Random(2015)
    with transaction(sessions) as session:
        auth_service.seed_agencies(session, clock=FixedClock(NOW), actor="bench")
        agencies = list(session.scalars(select(Agency.id)))
        sites = [{"code": f"site-{i}", "name": f"site {i}", "kind": "complex", "region": REGIONS[i % len(REGIONS)],
                  "address": "x", "opening_days": [], "created_at": NOW, "updated_at": NOW} for i in range(SITES)]
        session.execute(insert(Site), sites)
        site_ids = list(session.scalars(select(Site.id)))
        session.execute(insert(Room), [{
            "code": f"room-{i}", "name": f"room {i}", "site_id": site_ids[i % SITES], "agency_id": rng.choice(agencies),
            "building": "1", "floor": 1, "capacity": 10, "equipment": [], "sip_uri": f"sip:room-{i}@vc.bench",
            "address": f"10.{i // 65000}.{i // 250 % 256}.{i % 250 + 2}", "port": 5060, "protocol": "sip", "owner": "",
            "needs_bridge_room": True, "state": "down" if rng.random() < 0.25 else "up", "state_since": NOW,
            "out_of_service": "maintenance" if rng.random() < 0.02 else None, "created_at": NOW, "updated_at": NOW}
            for i in range(rooms)])
        session.execute(insert(Bridge), [{
            "code": f"bridge-{i}", "site_id": site_ids[0], "server": f"vc-bridge-{i}", "rooms_capacity": 3000,
            "participants_capacity": 12000, "state": "up", "rooms_in_use": rooms // 2, "participants": 40,
            "created_at": NOW, "updated_at": NOW} for i in range(2)])
    engine.dispose()


def percentile(samples: list[float], p: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rooms", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=300, help="measured scrapes per side (default 300)")
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        url = f"sqlite:///{Path(work) / 'controlplane.db'}"
        upgrade(url)
        populate(url, args.rooms)
        settings = Settings(env="test", database_url=url, data_dir=Path(work), workflows=False, cloud="",
                            metrics_refresh_seconds=3600)
        app = create_app(settings, clock=FixedClock(NOW))
        ctx = app.state.ctx
        client = TestClient(app)  # no lifespan: no refresher thread competes with the measurement
        started = time.perf_counter()
        refresh_rooms(ctx)
        refresh = time.perf_counter() - started
        rooms = ctx.metrics.of(RoomMetrics)
        filled = rooms.snapshot  # swapped with an empty one for the baseline
        text = client.get("/metrics").text
        counted = sum(float(v) for v in ROOM_LINE.findall(text))
        if counted != args.rooms:
            print(f"MISMATCH: the scrape counts {counted:.0f} rooms, {args.rooms} were inserted")
            return 1
        series = len(ROOM_LINE.findall(text))
        times: dict[str, list[float]] = {"A": [], "B": []}
        for i in range(args.warmup + args.requests):
            order = ("A", "B") if i % 2 == 0 else ("B", "A")
            for side in order:
                rooms.update(filled if side == "A" else RoomsSnapshot())
                started = time.perf_counter()
                response = client.get("/metrics")
                elapsed = time.perf_counter() - started
                assert response.status_code == 200
                if i >= args.warmup:
                    times[side].append(elapsed)
    a, b = times["A"], times["B"]
    print(f"rooms: {args.rooms} over {SITES} sites, {series} controlplane_rooms series (site x agency x state)")
    print(f"cache refresh (one SQL aggregate, off the scrape path): {refresh * 1000:.1f} ms")
    for name, samples in (("A  /metrics with the rooms", a), ("B  /metrics without them (baseline)", b)):
        print(f"{name}: p50 {statistics.median(samples) * 1000:.2f} ms, p95 {percentile(samples, 95) * 1000:.2f} ms")
    print(f"A/B (p50): {statistics.median(a) / statistics.median(b):.2f}; the rooms add "
          f"{(statistics.median(a) - statistics.median(b)) * 1000:.2f} ms to a scrape")
    print(f"goal: /metrics with {args.rooms} rooms p95 < 100 ms: "
          f"{'met' if percentile(a, 95) < 0.1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
