"""create_app(settings): the FastAPI application with its routers, metrics and lifespan."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.concurrency import run_in_threadpool

from controlplane import __version__
from controlplane.auth.router import router as auth_router
from controlplane.automation.router import router as jobs_router
from controlplane.clock import Clock
from controlplane.cloud import flows as cloud_flows
from controlplane.cloud.router import router as cloud_router
from controlplane.compliance.metrics import refresh_compliance
from controlplane.compliance.router import open_data as open_data_router
from controlplane.compliance.router import router as compliance_router
from controlplane.composition import build_context, close_context, start_engine, stop_engine
from controlplane.config import Settings
from controlplane.context import AppContext, CheckPort, CloudPort, RunnerPort
from controlplane.errors import install_error_handlers
from controlplane.http_api import declare_statuses
from controlplane.http_headers import SecurityHeaders
from controlplane.inputs import RefuseControlCharacters
from controlplane.inventory.router import router as inventory_router
from controlplane.periodic import PeriodicRefresher
from controlplane.rooms.metrics import refresh_rooms
from controlplane.rooms.router import router as rooms_router
from controlplane.uploads import install_body_limits
from controlplane.waves.router import router as migration_router
from controlplane.web.router import mount_web
from controlplane.workflows import Engine, EngineBusy

log = logging.getLogger(__name__)


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, cloud_gateway: CloudPort | None = None,
    playbook_runner: RunnerPort | None = None, check_runner: CheckPort | None = None,
) -> FastAPI:
    """The app. `cloud_gateway`, `playbook_runner` and `check_runner` replace the real adapters (tests, tools)."""
    settings = settings or Settings()
    ctx = build_context(settings, clock=clock, cloud_gateway=cloud_gateway, playbook_runner=playbook_runner,
                        check_runner=check_runner)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # DBOS refuses its blocking calls on an event loop's thread: start and stop it in a worker thread.
        engine = await run_in_threadpool(_start_engine, ctx)
        refreshers = [
            PeriodicRefresher(ctx, settings.metrics_refresh_seconds, job=refresh_compliance,
                              name="compliance-refresh"),
            PeriodicRefresher(ctx, settings.metrics_refresh_seconds, job=cloud_flows.refresh_cloud,
                              name="cloud-refresh"),
            PeriodicRefresher(ctx, settings.metrics_refresh_seconds, job=refresh_rooms, name="rooms-refresh"),
        ]
        for refresher in refreshers:
            refresher.start()
        try:
            yield
        finally:
            for refresher in refreshers:
                refresher.stop()
            if engine is not None:
                await run_in_threadpool(stop_engine, ctx, engine)
            close_context(ctx)

    app = FastAPI(
        title="Control plane",
        version=__version__,
        description="Integrated cloud and video-conference network of the government",
        lifespan=lifespan,
    )
    app.state.ctx = ctx
    install_error_handlers(app)
    # Outermost last: every answer, those of the guards included, gets the security headers.
    install_body_limits(app, settings)
    app.add_middleware(RefuseControlCharacters)
    app.add_middleware(SecurityHeaders)

    @app.middleware("http")
    async def _measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = _route_template(request)
        ctx.metrics.http_requests.labels(request.method, route, str(response.status_code)).inc()
        ctx.metrics.http_duration.labels(request.method, route).observe(time.perf_counter() - started)
        return response

    @app.get("/healthz", tags=["health"], summary="Public: liveness and database reachability")
    def healthz() -> dict[str, str]:
        with ctx.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    @app.get("/metrics", tags=["health"], response_class=PlainTextResponse,
             summary="Public: Prometheus metrics of this instance")
    def metrics() -> Response:
        return Response(generate_latest(ctx.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    app.include_router(auth_router)
    app.include_router(compliance_router)
    app.include_router(open_data_router)
    app.include_router(cloud_router)
    app.include_router(jobs_router)
    app.include_router(inventory_router)
    app.include_router(migration_router)
    app.include_router(rooms_router)
    mount_web(app)
    declare_statuses(app)
    return app


def _start_engine(ctx: AppContext) -> Engine | None:
    """The durable engine of this app, recovering the work a previous process left running."""
    if not ctx.settings.workflows:
        return None
    try:
        return start_engine(ctx)
    except EngineBusy:
        log.warning("the durable engine runs in another app of this process: this one takes no long work")
    except Exception:
        log.exception("the durable engine did not start: long work (applies, jobs, migrations) is refused until "
                      "it does")
    return None


def _route_template(request: Request) -> str:
    """The matched route's path template (a bounded label), never the raw path."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))
