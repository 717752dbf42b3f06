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
from controlplane.automation import flows as job_flows
from controlplane.automation.router import router as jobs_router
from controlplane.clock import Clock
from controlplane.cloud import flows as cloud_flows
from controlplane.cloud.router import router as cloud_router
from controlplane.compliance.router import open_data as open_data_router
from controlplane.compliance.router import router as compliance_router
from controlplane.config import Settings
from controlplane.context import AppContext, CheckPort, CloudPort, RunnerPort
from controlplane.db import make_engine, make_sessionmaker
from controlplane.errors import install_error_handlers
from controlplane.http_api import declare_statuses
from controlplane.http_headers import SecurityHeaders
from controlplane.inputs import RefuseControlCharacters
from controlplane.migration import flows as migration_flows
from controlplane.migration.engine import Engine, EngineBusy
from controlplane.migration.inventory_router import router as inventory_router
from controlplane.migration.router import router as migration_router
from controlplane.monitoring.metrics import Metrics
from controlplane.monitoring.refresh import PeriodicRefresher, refresh_cloud_figures
from controlplane.uploads import install_body_limits
from controlplane.web.router import mount_web

log = logging.getLogger(__name__)
OPERATIONS_GRACE_SECONDS = 10.0


def create_app(
    settings: Settings | None = None, *, clock: Clock | None = None, cloud_gateway: CloudPort | None = None,
    playbook_runner: RunnerPort | None = None, check_runner: CheckPort | None = None,
) -> FastAPI:
    """The app. `cloud_gateway`, `playbook_runner` and `check_runner` replace the real adapters (tests, tools)."""
    settings = settings or Settings()
    engine = make_engine(settings.effective_database_url)
    ctx = AppContext(settings=settings, engine=engine, sessions=make_sessionmaker(engine), clock=clock or Clock(),
                     metrics=Metrics())
    if cloud_gateway is not None:
        ctx.cloud.inject(cloud_gateway)
    ctx.automation.inject(runner=playbook_runner, checks=check_runner)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        try:
            cloud_flows.recover_interrupted(ctx)
        except Exception:  # e.g. a database not migrated yet: the app still starts and says so
            log.exception("looking for interrupted cloud operations failed")
        try:
            job_flows.recover_interrupted(ctx)
        except Exception:
            log.exception("looking for interrupted jobs failed")
        # DBOS refuses its blocking calls on an event loop's thread: start and stop it in a worker thread.
        workflows = await run_in_threadpool(_start_workflows, ctx)
        refreshers = [
            PeriodicRefresher(ctx, settings.metrics_refresh_seconds),
            PeriodicRefresher(ctx, settings.metrics_refresh_seconds, job=refresh_cloud_figures, name="cloud-refresh"),
        ]
        for refresher in refreshers:
            refresher.start()
        try:
            yield
        finally:
            for refresher in refreshers:
                refresher.stop()
            if workflows is not None:
                await run_in_threadpool(workflows.stop)
                ctx.workflows = None
            cancelled = ctx.operations.shutdown(grace=OPERATIONS_GRACE_SECONDS)
            try:
                cloud_flows.mark_cancelled(ctx, cancelled)
            except Exception:
                log.exception("recording the cloud operations dropped at shutdown failed")
            dropped = ctx.automation.executor.shutdown(grace=OPERATIONS_GRACE_SECONDS)
            try:
                job_flows.mark_dropped(ctx, dropped)
            except Exception:
                log.exception("recording the jobs dropped at shutdown failed")
            ctx.cloud.close()
            engine.dispose()

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
        with engine.connect() as connection:
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
    mount_web(app)
    declare_statuses(app)
    return app


def _start_workflows(ctx: AppContext) -> Engine | None:
    """The migration engine (DBOS) of this app, recovering the workflows a previous process left running."""
    if not ctx.settings.workflows:
        return None
    workflows = Engine(ctx)
    try:
        workflows.start()
    except EngineBusy:
        log.warning("the migration engine runs in another app of this process: this one runs no migrations")
        return None
    except Exception:
        log.exception("the migration engine did not start: migrations cannot run until it does")
        return None
    ctx.workflows = workflows
    try:
        migration_flows.resume_interrupted(ctx)
        migration_flows.count_states(ctx)
    except Exception:
        log.exception("looking for migrations to resume failed")
    return workflows


def _route_template(request: Request) -> str:
    """The matched route's path template (a bounded label), never the raw path."""
    route = request.scope.get("route")
    return str(getattr(route, "path", "unmatched"))
