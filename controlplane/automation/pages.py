"""Pages of the automation domain: playbook jobs (/jobs, /jobs/{id} with a live log over Server-Sent Events, cancel)
and the SSH credentials jobs log in with (/credentials)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Form, Header, Query, Request, Response
from fastapi.responses import RedirectResponse

from controlplane.auth.deps import Ctx, DbSession
from controlplane.auth.roles import Permission, Principal
from controlplane.automation import flows, service
from controlplane.automation.domain import JobStatus
from controlplane.automation.router import job_event_stream
from controlplane.automation.schemas import JobEventRead, JobRead
from controlplane.db import transaction
from controlplane.errors import InvalidInput
from controlplane.web import kit
from controlplane.web.i18n import Translator

JOBS_SHOWN = 100
EVENTS_SHOWN = 2000
HOST_COUNTS = ("ok", "changed", "failed", "unreachable", "skipped")
EVENT_KINDS = ("play", "task", "ok", "failed", "unreachable", "skipped", "stats", "check", "verify")
CHECK_OUTCOMES = ("passed", "failed", "skipped")

router = kit.page_router()


@dataclass(frozen=True)
class HostRow:
    name: str
    address: str
    groups: list[str]
    counts: dict[str, int]
    cloud_href: str | None  # the host's server on its agency's cloud page


def _job_status(text: str) -> JobStatus | None:
    text = text.strip()
    if not text:
        return None
    try:
        return JobStatus(text)
    except ValueError:
        raise InvalidInput(f"unknown job status '{text}'; one of {', '.join(s.value for s in JobStatus)}",
                           field="status") from None


def _cloud_href(job: JobRead, name: str, address: str, principal: Principal) -> str | None:
    """The agency's cloud page, pointed at the server with the host's name or address (the page finds it among
    the servers it reads); none for a job of no agency, or a viewer who may not read the cloud."""
    if not job.agency or not principal.has(Permission.CLOUD_READ):
        return None
    return f"/cloud/{quote(job.agency)}?" + urlencode({"host": name, "address": address}) + "#host-match"


def _host_rows(job: JobRead, events: list[JobEventRead], principal: Principal) -> list[HostRow]:
    """Per-host totals: the job's own once it has ended, else counted from the events so far."""
    counted: dict[str, dict[str, int]] = {}
    for event in events:
        if event.host is not None and event.kind in HOST_COUNTS:
            counts = counted.setdefault(event.host, dict.fromkeys(HOST_COUNTS, 0))
            counts[event.kind] += 1
            counts["changed"] += int(event.changed)
    totals = {host: stats.model_dump() for host, stats in job.host_stats.items()} or counted
    return [HostRow(h.name, h.address, h.groups, totals.get(h.name, dict.fromkeys(HOST_COUNTS, 0)),
                    _cloud_href(job, h.name, h.address, principal))
            for h in job.hosts]


def _job_labels(t: Translator) -> dict[str, Any]:
    """The labels the live log's script shows for what arrives (the page's language)."""
    return {"kind": {k: t(f"jkind.{k}") for k in EVENT_KINDS},
            "status": {s.value: t(f"jstatus.{s.value}") for s in JobStatus},
            "outcome": {o: t(f"outcome.{o}") for o in CHECK_OUTCOMES}, "yes": t("yes")}


@router.get("/jobs")
def jobs(
    *,
    request: Request,
    status: str = Query("", max_length=20),
    principal: kit.PagePrincipal,
    session: DbSession,
) -> Response:
    """Jobs newest first (a ministry sees its own agency's only), filtered by status."""
    kit.require(principal, Permission.JOBS_READ)
    chosen = _job_status(status)
    rows = [service.job_read(job)
            for job in service.list_jobs(session, viewer=principal, status=chosen, limit=JOBS_SHOWN)]
    return kit.render(request, "jobs.html", {"jobs": rows, "status": chosen.value if chosen else "",
                                             "statuses": [s.value for s in JobStatus], "limit": JOBS_SHOWN})


@router.get("/jobs/{job_id}")
def job_page(
    *,
    request: Request,
    job_id: str,
    canceled: bool = False,
    principal: kit.PagePrincipal,
    session: DbSession,
) -> Response:
    """One job with its events so far and its checks; while it runs, a script follows its events live."""
    kit.require(principal, Permission.JOBS_READ)
    job = service.job_read(service.get_job(session, viewer=principal, job_id=job_id))
    events = service.events(session, job_id=job_id, limit=EVENTS_SHOWN)
    active = not job.status.finished
    nonce = kit.new_nonce()
    response = kit.render(request, "jobs_detail.html", {
        "job": job, "events": events, "checks": service.checks(session, job_id=job_id),
        "hosts": _host_rows(job, events, principal), "counts": HOST_COUNTS, "events_shown": EVENTS_SHOWN,
        "last_seq": events[-1].seq if events else 0, "active": active, "canceled": canceled,
        "may_cancel": active and principal.has(Permission.JOBS_RUN), "nonce": nonce,
        "labels": _job_labels(kit.texts(request)),
    })
    return kit.allow_script(response, nonce) if active else response


@router.get("/jobs/{job_id}/events/stream")
def job_events_stream(
    *,
    job_id: str,
    after: int = Query(0, ge=0),
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
    principal: kit.PagePrincipal,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    """The job's events as Server-Sent Events for the job page (cookie login, the page's permission check)."""
    kit.require(principal, Permission.JOBS_READ)
    service.get_job(session, viewer=principal, job_id=job_id)  # 404 before the stream starts
    return job_event_stream(ctx, job_id, after=last_event_id if last_event_id is not None else after)


@router.post("/jobs/{job_id}/cancel")
def job_cancel(*, request: Request, job_id: str, csrf: str = Form("", max_length=200), ctx: Ctx) -> Response:
    """Cancel a job: a pending one at once, a running one by its runner within seconds."""
    kit.form_page(request, f"/jobs/{quote(job_id)}")
    with transaction(ctx.sessions) as session:
        principal = kit.authenticate_page(request, session, ctx)
        kit.check_csrf(request, csrf)
        kit.require(principal, Permission.JOBS_RUN)
        flows.cancel_job(session, ctx=ctx, actor=principal, job_id=job_id)
    flows.signal_cancel(ctx, job_id=job_id)
    return RedirectResponse(f"/jobs/{quote(job_id)}?canceled=1", status_code=303)


@router.get("/credentials")
def credentials(*, request: Request, principal: kit.PagePrincipal, session: DbSession) -> Response:
    """The SSH credentials jobs log in with: never a private key, only what identifies it."""
    kit.require(principal, Permission.CREDENTIALS_READ)
    rows = [service.credential_read(c) for c in service.list_credentials(session)]
    return kit.render(request, "credentials.html", {"credentials": rows})
