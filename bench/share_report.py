"""Benchmark: the share report through the API against one plain SQL query, on ~50k sessions.

    .venv/bin/python bench/share_report.py                      # temporary SQLite file
    .venv/bin/python bench/share_report.py --postgres           # temporary database on 127.0.0.1:5432
    .venv/bin/python bench/share_report.py --database-url URL   # an empty database of your own
    .venv/bin/python bench/share_report.py --requests 500 --profile 50

It migrates a fresh database, seeds the catalogue, inserts ~50k sessions (201 meetings x 2015-2024), then
times, interleaved in one run,

  A  GET /api/v1/compliance/shares?period=2020 through the real app (in-process ASGI via starlette's
     TestClient: middleware, bearer-token auth, SQL aggregates, policy segments, domain rules, JSON), and
  B  the baseline: the same per-ministry numbers from ONE plain SQL query (GROUP BY host agency, status,
     mode, with the designation-window and period filters) on a plain connection of the same engine,
     plus the few lines of Python that turn counts into shares (hybrid counts as video, 2014 policy).

A and B must agree on held / video / share for every ministry (and government-wide); the script stops with
exit status 1 if they do not. Times are printed, never asserted: the goal (report p95 < 100 ms) is reported.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import math
import os
import pstats
import random
import sys
import tempfile
import time
import uuid
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

from sqlalchemy import Date, bindparam, func, insert, select, text
from sqlalchemy.engine import Engine, make_url

from controlplane.app import create_app
from controlplane.auth import service as auth_service
from controlplane.auth.roles import Role
from controlplane.auth.schemas import UserCreate
from controlplane.clock import FixedClock
from controlplane.compliance import service as compliance_service
from controlplane.compliance.demo import session_rows
from controlplane.compliance.domain import Evidence, Mode, SessionStatus, parse_period
from controlplane.compliance.models import Meeting, MeetingSession
from controlplane.compliance.schemas import ShareReport
from controlplane.config import Settings
from controlplane.db import make_engine, make_sessionmaker, transaction
from controlplane.migrations import upgrade

with warnings.catch_warnings():  # starlette's nudge towards httpx2: not this benchmark's business
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

NOW = datetime(2024, 12, 31, tzinfo=UTC)
FIRST_DAY, LAST_DAY = date(2015, 1, 1), date(2024, 12, 31)
TARGET_ROWS = 50_000  # the brief: 48k-52k sessions
CHUNK = 5_000
GOAL_P95_MS = 100.0
PASSWORD = "bench-horse-battery-9"
PG_ADMIN_URL = os.environ.get("CP_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")

# B: the whole report in one statement. Cancelled sessions never count; a session counts only inside its
# meeting's designation window; the period is [start, end).
BASELINE_SQL = text(
    """
    SELECT a.code, s.status, s.mode, COUNT(*) AS n
    FROM meeting_sessions AS s
    JOIN meetings AS m ON m.id = s.meeting_id
    JOIN agencies AS a ON a.id = m.host_agency_id
    WHERE s.held_on >= :start AND s.held_on < :end
      AND s.status <> 'cancelled'
      AND s.held_on >= m.designated_from
      AND (m.designated_until IS NULL OR s.held_on <= m.designated_until)
    GROUP BY a.code, s.status, s.mode
    """
).bindparams(bindparam("start", type_=Date), bindparam("end", type_=Date))


# --- database ------------------------------------------------------------------------------------

@contextmanager
def temporary_postgres(admin_url: str) -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of admin_url; dropped afterwards."""
    import psycopg

    plain = admin_url.replace("postgresql+psycopg://", "postgresql://")
    name = f"cp_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(plain, autocommit=True, connect_timeout=5) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(plain, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def temporary_sqlite() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="cp-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'bench.db'}"


def _video_probability(year: int) -> float:
    # Same growth curve as controlplane.compliance.demo: more video after 2014 and again after 2020.
    return min(0.85, 0.22 + 0.04 * max(0, year - 2011) + (0.1 if year >= 2020 else 0.0))


def extra_rows(
    meetings: list[tuple[int, str, date, date | None]], taken: set[tuple[int, date]], needed: int, *, seed: int
) -> list[dict[str, object]]:
    """`needed` more sessions, deterministic, spread evenly over the meetings designated in 2015-2024.

    The demo generator follows each meeting's cadence (mostly quarterly), which gives ~15k sessions over ten
    years; the rest are working-level sittings on random free days inside each meeting's designation window.
    A few percent are cancelled, so the 'cancelled never counts' filter has work to do.
    """
    rng = random.Random(seed)
    eligible = []
    for meeting_id, _cadence, designated_from, designated_until in meetings:
        lo = max(FIRST_DAY, designated_from)
        hi = min(LAST_DAY, designated_until) if designated_until else LAST_DAY
        if lo <= hi:
            eligible.append((meeting_id, lo, hi))
    rows: list[dict[str, object]] = []
    for index, (meeting_id, lo, hi) in enumerate(eligible):
        want = needed // len(eligible) + (1 if index < needed % len(eligible) else 0)
        free = [d for d in (lo + timedelta(days=i) for i in range((hi - lo).days + 1)) if (meeting_id, d) not in taken]
        for day in sorted(rng.sample(free, min(want, len(free)))):
            roll, p = rng.random(), _video_probability(day.year)
            mode = Mode.VIDEO if roll < p else Mode.HYBRID if roll < p + 0.1 else Mode.IN_PERSON
            status = SessionStatus.CANCELLED if rng.random() < 0.03 else SessionStatus.HELD
            rows.append({"meeting_id": meeting_id, "held_on": day, "mode": mode.value, "status": status.value,
                         "evidence": Evidence.MANUAL.value, "note": ""})
    return rows


def outside_window_rows(meetings: list[tuple[int, str, date, date | None]]) -> list[dict[str, object]]:
    """Monthly sessions of the meetings whose designation ended before 2015: they must never count."""
    rows: list[dict[str, object]] = []
    for meeting_id, _cadence, _from, designated_until in meetings:
        if designated_until is not None and designated_until < FIRST_DAY:
            for year in range(FIRST_DAY.year, LAST_DAY.year + 1):
                rows.extend({"meeting_id": meeting_id, "held_on": date(year, month, 15), "mode": Mode.VIDEO.value,
                             "status": SessionStatus.HELD.value, "evidence": Evidence.MANUAL.value, "note": ""}
                            for month in range(1, 13))
    return rows


def build_database(url: str, clock: FixedClock) -> int:
    """Migrate, seed the catalogue and insert ~50k sessions; returns the number of sessions."""
    upgrade(url)
    engine = make_engine(url)
    try:
        sessions = make_sessionmaker(engine)
        with transaction(sessions) as s:
            if s.scalar(select(func.count()).select_from(MeetingSession)):
                sys.exit(f"{make_url(url).render_as_string()} already holds sessions: give an empty database")
            auth_service.seed_agencies(s, clock=clock, actor="bench")
            compliance_service.seed_policies(s, clock=clock, actor="bench")
            compliance_service.seed_meetings(s, clock=clock, actor="bench")
        with transaction(sessions) as s:
            meetings = [(m.id, m.cadence, m.designated_from, m.designated_until)
                        for m in s.scalars(select(Meeting).order_by(Meeting.id))]
            demo = list(session_rows(meetings, start=FIRST_DAY, end=LAST_DAY, today=clock.today()))
            outside = outside_window_rows(meetings)
            taken = {(r["meeting_id"], r["held_on"]) for r in demo + outside}
            extra = extra_rows(meetings, taken, TARGET_ROWS - len(demo) - len(outside), seed=2015)  # type: ignore[arg-type]
            rows = demo + outside + extra
            now = clock.now()
            for start in range(0, len(rows), CHUNK):
                s.execute(insert(MeetingSession), [dict(r, created_at=now, updated_at=now)
                                                   for r in rows[start:start + CHUNK]])
        with engine.begin() as conn:
            conn.execute(text("ANALYZE"))  # fresh statistics, as autovacuum / PRAGMA optimize would leave
            count = conn.execute(text("SELECT COUNT(*) FROM meeting_sessions")).scalar_one()
        print(f"meetings: {len(meetings)}; sessions inserted: {count} = {len(demo)} demo.session_rows (by cadence) "
              f"+ {len(extra)} extra (random free days) + {len(outside)} outside any designation window")
        return int(count)
    finally:
        engine.dispose()


# --- the two measured paths -----------------------------------------------------------------------

Numbers = dict[str, tuple[int, int, float | None]]  # ministry code -> (held, video, share)


def api_numbers(report: dict[str, Any]) -> tuple[Numbers, tuple[int, int, float | None]]:
    rows = {r["key"]: (r["held"], r["video"], r["share"]) for r in report["rows"]}
    gov = report["government"]
    return rows, (gov["held"], gov["video"], gov["share"])


def baseline(engine: Engine, start: date, end: date) -> tuple[Numbers, tuple[int, int, float | None]]:
    """B: one GROUP BY query, then counts -> shares (hybrid counts as video under the 2014 policy)."""
    with engine.connect() as conn:
        counts = conn.execute(BASELINE_SQL, {"start": start, "end": end}).all()
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for code, status, mode, n in counts:
        if status == "held":
            tally[code][0] += n
            if mode in ("video", "hybrid"):
                tally[code][1] += n

    def share(held: int, video: int) -> float | None:
        return float(round(Fraction(video, held), 4)) if held else None

    rows = {code: (held, video, share(held, video)) for code, (held, video) in tally.items()}
    held, video = sum(v[0] for v in tally.values()), sum(v[1] for v in tally.values())
    return rows, (held, video, share(held, video))


def differences(a: tuple[Numbers, tuple[int, int, float | None]],
                b: tuple[Numbers, tuple[int, int, float | None]]) -> list[str]:
    (a_rows, a_gov), (b_rows, b_gov) = a, b
    problems = []
    for code in sorted(set(a_rows) | set(b_rows)):
        # A lists every ministry hosting a meeting designated in the period, B only those with sessions.
        got, want = a_rows.get(code), b_rows.get(code, (0, 0, None))
        if got != want:
            problems.append(f"  {code}: API (held, video, share) = {got}, SQL baseline = {want}")
    if a_gov != b_gov:
        problems.append(f"  government: API = {a_gov}, SQL baseline = {b_gov}")
    return problems


# --- measuring -----------------------------------------------------------------------------------

def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of the values."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def interleaved(a: Callable[[], object], b: Callable[[], object], requests: int, warmup: int
                ) -> tuple[list[float], list[float]]:
    """Run A and B alternately (the order flips each iteration); wall times in ms."""
    for _ in range(warmup):
        a()
        b()
    times_a: list[float] = []
    times_b: list[float] = []
    for i in range(requests):
        pair = ((a, times_a), (b, times_b)) if i % 2 == 0 else ((b, times_b), (a, times_a))
        for fn, sink in pair:
            started = time.perf_counter()
            fn()
            sink.append((time.perf_counter() - started) * 1000)
    return times_a, times_b


def profile(fn: Callable[[], object], calls: int, top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        fn()
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(top)
    stats.sort_stats("tottime").print_stats(top)
    return out.getvalue()


def stage_breakdown(app: Any, secret: str, period_text: str, calls: int) -> tuple[str, Callable[[], object]]:
    """Median time of each stage of the route's work, run in this thread (the test client runs the app in
    other threads, where cProfile cannot see it), and that work as one function, for cProfile."""
    ctx = app.state.ctx
    period = parse_period(period_text)
    stages: dict[str, list[float]] = defaultdict(list)

    def tick(name: str, since: float) -> float:
        now = time.perf_counter()
        stages[name].append((now - since) * 1000)
        return now

    def work() -> str:
        t = time.perf_counter()
        with transaction(ctx.sessions) as session:
            principal = auth_service.resolve_bearer(session, clock=ctx.clock, secret=secret)
            assert principal is not None
            t = tick("1 session + resolve_bearer (2 queries)", t)
            compliance_service.domain_policies(session)  # alone, to see its share; share_report reloads them
            t = tick("2 domain_policies (1 query)", t)
            report = compliance_service.share_report(session, period=period)
            t = tick("3 share_report (policies + 2 aggregates + agencies)", t)
        t = tick("4 commit / close", t)
        body = ShareReport.model_validate(report.model_dump()).model_dump_json()
        tick("5 response model validation + JSON", t)
        return body

    for _ in range(calls):
        work()
    lines = [f"  {name:56}{percentile(times, 50):8.2f} ms" for name, times in sorted(stages.items())]
    return "\n".join(lines), work


def app_seconds(app: Any) -> tuple[float, float]:
    """(sum, count) of the app's own request-duration histogram for the shares route."""
    totals = {"sum": 0.0, "count": 0.0}
    for metric in app.state.ctx.metrics.http_duration.collect():
        for sample in metric.samples:
            if sample.labels.get("route") == "/api/v1/compliance/shares":
                for kind in totals:
                    if sample.name.endswith("_" + kind):
                        totals[kind] += sample.value
    return totals["sum"], totals["count"]


def run(url: str, *, requests: int, warmup: int, period_text: str, profile_calls: int) -> int:
    clock = FixedClock(NOW)
    backend = make_url(url).get_backend_name()
    print(f"backend: {backend} ({make_url(url).render_as_string()})")
    started = time.perf_counter()
    sessions_count = build_database(url, clock)
    print(f"database built in {time.perf_counter() - started:.1f} s")

    period = parse_period(period_text)
    # A long refresh interval keeps the metrics thread (it runs once at start-up) out of the measurement.
    app = create_app(Settings(env="test", database_url=url, metrics_refresh_seconds=3600), clock=clock)
    engine: Engine = app.state.ctx.engine
    with TestClient(app) as client:
        with transaction(app.state.ctx.sessions) as s:
            auth_service.create_user(s, clock=clock, actor="bench", data=UserCreate(
                username="bench-auditor", password=PASSWORD, role=Role.AUDITOR))
        response = client.post("/api/v1/auth/token", json={"username": "bench-auditor", "password": PASSWORD})
        if response.status_code != 200:
            sys.exit(f"could not log in: {response.status_code} {response.text}")
        headers = {"Authorization": f"Bearer {response.json()['access_token']}"}
        path = f"/api/v1/compliance/shares?period={period_text}"

        def call_a() -> dict[str, Any]:
            r = client.get(path, headers=headers)
            if r.status_code != 200:
                sys.exit(f"GET {path} answered {r.status_code}: {r.text}")
            return r.json()  # type: ignore[no-any-return]

        def call_b() -> tuple[Numbers, tuple[int, int, float | None]]:
            return baseline(engine, period.start, period.end)

        report = call_a()
        problems = differences(api_numbers(report), call_b())
        if problems:
            print("MISMATCH: the API and the plain SQL baseline disagree on held/video/share:", *problems, sep="\n")
            return 1
        held_ministries = sum(1 for r in report["rows"] if r["held"])
        print(f"check: API and SQL baseline agree on {len(report['rows'])} ministries ({held_ministries} with "
              f"sessions) and the government total {api_numbers(report)[1]} for period {report['period']}")

        before = app_seconds(app)
        times_a, times_b = interleaved(call_a, call_b, requests, warmup)
        after = app_seconds(app)
        inside_ms = (after[0] - before[0]) / (after[1] - before[1]) * 1000
        breakdown = profiled = ""
        if profile_calls:
            breakdown, work = stage_breakdown(app, headers["Authorization"].split()[1], period_text, profile_calls)
            profiled = profile(work, profile_calls)

    p50_a, p95_a, max_a = percentile(times_a, 50), percentile(times_a, 95), max(times_a)
    p50_b, p95_b, max_b = percentile(times_b, 50), percentile(times_b, 95), max(times_b)
    print()
    print(f"sessions: {sessions_count}   requests: {requests} each (after {warmup} warm-up), interleaved")
    print(f"{'':44}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}")
    print(f"{'A  API GET /compliance/shares?period=' + period_text:44}{p50_a:9.2f}{p95_a:9.2f}{max_a:9.2f}")
    print(f"{'B  one plain SQL GROUP BY + Python':44}{p50_b:9.2f}{p95_b:9.2f}{max_b:9.2f}")
    print(f"   A's mean inside the app (its own middleware timer, excludes the test client): {inside_ms:.2f} ms; "
          f"mean of A: {sum(times_a) / len(times_a):.2f} ms")
    print(f"ratio A/B: p50 {p50_a / p50_b:.1f}x   p95 {p95_a / p95_b:.1f}x")
    met = "MET" if p95_a < GOAL_P95_MS else "NOT MET"
    print(f"goal 'report p95 < {GOAL_P95_MS:.0f} ms': {met} (p95 = {p95_a:.2f} ms)")
    if profiled:
        print(f"\nthe route's work in this thread, median of {profile_calls} (p50 of A above includes all of it "
              f"plus the HTTP/ASGI stack and thread hand-offs):\n{breakdown}")
        print(f"\ncProfile of {profile_calls} runs of that work:\n{profiled}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--database-url", help="an empty database (default: a temporary SQLite file)")
    where.add_argument("--postgres", action="store_true",
                       help="create and drop a temporary database on the PostgreSQL server of --postgres-admin-url")
    parser.add_argument("--postgres-admin-url", default=PG_ADMIN_URL, help=f"default: {PG_ADMIN_URL}")
    parser.add_argument("--requests", type=int, default=300, help="measured requests per path (default 300)")
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests per path first (default 20)")
    parser.add_argument("--period", default="2020", help="report period, 2014 or later (default 2020)")
    parser.add_argument("--profile", type=int, default=0, metavar="N",
                        help="afterwards, cProfile N more API requests and print the top functions")
    args = parser.parse_args(argv)
    if args.requests < 1:
        parser.error("--requests must be at least 1")
    try:
        if parse_period(args.period).start < date(2014, 1, 1):
            parser.error("--period must lie in 2014 or later: the baseline applies the 2014 policy (hybrid = video)")
    except ValueError as exc:
        parser.error(str(exc))

    if args.database_url:
        return run(args.database_url, requests=args.requests, warmup=args.warmup, period_text=args.period,
                   profile_calls=args.profile)
    with (temporary_postgres(args.postgres_admin_url) if args.postgres else temporary_sqlite()) as url:
        return run(url, requests=args.requests, warmup=args.warmup, period_text=args.period,
                   profile_calls=args.profile)


if __name__ == "__main__":
    sys.exit(main())
