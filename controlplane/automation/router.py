"""HTTP routes of playbook jobs: SSH credentials, jobs (run, read, cancel), their events (JSON and Server-Sent
Events) and their check evidence."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Header, Query, Response
from fastapi.responses import StreamingResponse

from controlplane.auth.deps import Ctx, DbSession, require
from controlplane.auth.roles import Permission, Principal
from controlplane.automation import flows, service
from controlplane.automation.domain import JobStatus
from controlplane.automation.schemas import (
    CredentialIn,
    CredentialRead,
    JobAccepted,
    JobCheckRead,
    JobEventRead,
    JobIn,
    JobRead,
)
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.event_stream import BATCH, event_stream
from controlplane.http_api import MAX_ID, After, errors
from controlplane.secrets import secret_box

JobReader = Annotated[Principal, Depends(require(Permission.JOBS_READ))]
JobRunner = Annotated[Principal, Depends(require(Permission.JOBS_RUN))]
CredentialReader = Annotated[Principal, Depends(require(Permission.CREDENTIALS_READ))]
CredentialWriter = Annotated[Principal, Depends(require(Permission.CREDENTIALS_WRITE))]

router = APIRouter(prefix="/api/v1", tags=["jobs"])


@router.get("/credentials", response_model=list[CredentialRead], summary="SSH credentials (never their keys)")
def list_credentials(*, principal: CredentialReader, session: DbSession) -> list[CredentialRead]:
    return [service.credential_read(c) for c in service.list_credentials(session)]


@router.put("/credentials/{name}", response_model=CredentialRead,
            summary="Create an SSH credential (201), or replace its key (200); the private key is stored sealed",
            responses={201: {"model": CredentialRead, "description": "created"}})
def put_credential(*, name: str, data: CredentialIn, response: Response, principal: CredentialWriter,
                   session: DbSession, ctx: Ctx) -> CredentialRead:
    credential, created = service.put_credential(session, clock=ctx.clock, actor=principal,
                                                 box=secret_box(ctx.settings), name=name, data=data)
    response.status_code = 201 if created else 200
    return service.credential_read(credential)


@router.delete("/credentials/{name}", status_code=204, response_class=Response,
               summary="Delete a credential no job has used (409 otherwise)", responses=errors(409))
def delete_credential(*, name: str, principal: CredentialWriter, session: DbSession, ctx: Ctx) -> Response:
    service.delete_credential(session, clock=ctx.clock, actor=principal, name=name)
    return Response(status_code=204)


@router.post("/jobs", response_model=JobAccepted, status_code=202,
             summary="Run a playbook on hosts in the background, then the roles' checks: 202 with the job",
             responses=errors(404, 503, s404="the credential or the agency is unknown",
                              s503="the server accepts no more jobs now (at its limit, or stopping)"))
def run_job(*, data: JobIn, response: Response, background: BackgroundTasks, principal: JobRunner,
            session: DbSession, ctx: Ctx) -> JobAccepted:
    job = flows.request_job(session, ctx=ctx, actor=principal, data=data)
    # Runs after the response, hence after this request's transaction committed the pending job.
    background.add_task(flows.submit_job, ctx, job_id=job.id)
    url = f"{router.prefix}/jobs/{job.id}"
    response.headers["Location"] = url
    return JobAccepted(job_id=job.id, status=JobStatus(job.status), url=url, events_url=f"{url}/events",
                       stream_url=f"{url}/events/stream")


@router.get("/jobs", response_model=list[JobRead], summary="Jobs, newest first",
            responses=errors(404, s404="the agency is unknown"))
def list_jobs(*, principal: JobReader, session: DbSession, status: JobStatus | None = None,
              agency: str | None = None, limit: int = Query(50, ge=1, le=500)) -> list[JobRead]:
    return [service.job_read(j) for j in service.list_jobs(session, viewer=principal, status=status, agency=agency,
                                                           limit=limit)]


@router.get("/jobs/{job_id}", response_model=JobRead, summary="A job: status, explanation, per-host totals")
def get_job(*, job_id: str, principal: JobReader, session: DbSession) -> JobRead:
    return service.job_read(service.get_job(session, viewer=principal, job_id=job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobRead, status_code=202,
             summary="Stop a job: a pending one now, a running one within seconds (409 once it has ended)",
             responses=errors(409))
def cancel_job(*, job_id: str, background: BackgroundTasks, principal: JobRunner, session: DbSession,
               ctx: Ctx) -> JobRead:
    job = flows.cancel_job(session, ctx=ctx, actor=principal, job_id=job_id)
    background.add_task(flows.signal_cancel, ctx, job_id=job_id)  # after the commit, like the job's start
    return service.job_read(job)


@router.get("/jobs/{job_id}/events", response_model=list[JobEventRead],
            summary="A job's events after `after` (its seq), in order")
def job_events(*, job_id: str, principal: JobReader, session: DbSession, after: After = 0,
               limit: int = Query(1000, ge=1, le=5000)) -> list[JobEventRead]:
    service.get_job(session, viewer=principal, job_id=job_id)
    return service.events(session, job_id=job_id, after=after, limit=limit)


@router.get("/jobs/{job_id}/checks", response_model=list[JobCheckRead],
            summary="The job's evidence: every testinfra check per host")
def job_checks(*, job_id: str, principal: JobReader, session: DbSession) -> list[JobCheckRead]:
    service.get_job(session, viewer=principal, job_id=job_id)
    return service.checks(session, job_id=job_id)


@router.get("/jobs/{job_id}/events/stream", response_class=StreamingResponse,
            summary="A job's events as Server-Sent Events (`job-event`, then one `end` with the outcome)",
            responses={200: {"content": {"text/event-stream": {}}}})
def stream_job_events(*, job_id: str, principal: JobReader, session: DbSession, ctx: Ctx, after: After = 0,
                      last_event_id: Annotated[int | None, Header(ge=0, le=MAX_ID)] = None) -> Response:
    service.get_job(session, viewer=principal, job_id=job_id)  # 404 before the stream starts
    return job_event_stream(ctx, job_id, after=last_event_id if last_event_id is not None else after)


def job_event_stream(ctx: AppContext, job_id: str, *, after: int) -> Response:
    """SSE of a job's events from `after` on, until the job has ended and every event was sent (also the pages')."""
    def read(seq: int) -> tuple[list[JobEventRead], JobRead]:
        with transaction(ctx.sessions) as session:
            job = service.job_read(service.get_job(session, viewer="system", job_id=job_id))
            return service.events(session, job_id=job_id, after=seq, limit=BATCH), job

    return event_stream(read, after=after, event="job-event", cursor=lambda event: event.seq,
                        finished=lambda job: job.status.finished,
                        end=lambda job: {"status": job.status.value, "explanation": job.explanation})
