"""Pages of the cloud domain: agencies on the cloud with the hypervisors' capacity (/cloud), one agency read now
with its plan, apply, operations and onboarding spec, which operators edit there (/cloud/{code})."""

from __future__ import annotations

from itertools import zip_longest
from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import Form, Query, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import ValidationError
from sqlalchemy.orm import Session

from controlplane.auth.deps import Ctx, DbSession
from controlplane.auth.roles import Permission, Principal
from controlplane.cloud import flows, service
from controlplane.cloud.metrics import CloudCollector
from controlplane.cloud.schemas import OnboardingSpecIn, OnboardingSpecRead, ServerRead
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import AppError
from controlplane.web import kit

QUOTAS = ("instances", "cores", "ram_mb", "volumes")
RULE_FIELDS = ("protocol", "port_min", "port_max", "remote_cidr")
BLANK_RULES = 2  # empty ingress rows the spec form offers for new rules
SERVER_COLOURS = {"ACTIVE": "on_track", "BUILD": "at_risk", "REBUILD": "at_risk", "RESIZE": "at_risk",
                  "REBOOT": "at_risk", "HARD_REBOOT": "at_risk", "MIGRATING": "at_risk", "ERROR": "below"}

router = kit.page_router()


@router.get("/cloud")
def cloud(*, request: Request, principal: kit.PagePrincipal, session: DbSession, ctx: Ctx) -> Response:
    """Agencies on the cloud with status and quota use, from the cache the refresher keeps (no cloud call)."""
    kit.require(principal, Permission.CLOUD_READ)
    snapshot = ctx.metrics.of(CloudCollector).snapshot
    rows = [service.tenancy_read(t, quota=snapshot.quotas.get(t.agency.code, ()),
                                 quota_at=snapshot.quotas_at.get(t.agency.code))
            for t in service.list_tenancies(session, viewer=principal, cloud=ctx.cloud.cloud_name)]
    return kit.render(request, "cloud.html", {"rows": rows, "snapshot": snapshot, "cloud": ctx.cloud.cloud_name,
                                              "show_capacity": not principal.scoped})


# --- one agency ----------------------------------------------------------------------------------

def _spec_form(spec: OnboardingSpecRead) -> dict[str, Any]:
    """The spec form's fields (text, as a browser sends them back) filled from the stored spec."""
    def text(value: Any) -> str:
        return "" if value is None else str(value)

    quotas = spec.quotas.model_dump()
    rules = [{name: text(getattr(rule, name)) for name in RULE_FIELDS} for rule in spec.ingress]
    return {**{name: text(quotas[name]) for name in QUOTAS}, "cidr": spec.cidr, "public_key": spec.public_key or "",
            "ingress": rules + [dict.fromkeys(RULE_FIELDS, "") for _ in range(BLANK_RULES)]}


def _matches(server: ServerRead, host: str, address: str) -> bool:
    return bool(host and server.name == host) or bool(address and address in server.addresses)


def _agency_context(session: Session, request: Request, ctx: AppContext, principal: Principal, code: str, *,
                    plan: bool = False, queued: str = "", host: str = "", address: str = "") -> dict[str, Any]:
    """One agency's page, its cloud part read now; `plan` compares the spec with the cloud (a read, kept as the
    last plan); `host`/`address` mark the server a job's host is (by name or address)."""
    tenancy = service.get_tenancy(session, viewer=principal, cloud=ctx.cloud.cloud_name, code=code)
    spec = service.spec_read(tenancy)
    context: dict[str, Any] = {
        "cloud": ctx.cloud.cloud_name, "row": service.tenancy_read(tenancy), "spec": spec,
        "key_fingerprint": service.key_fingerprint(tenancy.public_key), "live": None, "cloud_error": None,
        "plan": service.last_plan_read(tenancy), "fresh_plan": False,
        "may_apply": principal.has(Permission.CLOUD_WRITE), "queued": queued, "saved": False,
        "operations": [service.operation_read(op) for op in
                       service.list_operations(session, agency_id=tenancy.agency_id, cloud=tenancy.cloud)],
        "spec_form": _spec_form(spec), "spec_errors": {}, "spec_error": None,
        "host": host, "address": address, "matched": None, "server_colours": SERVER_COLOURS,
    }
    try:
        context["live"] = live = flows.live_state(ctx, tenancy)
        if host or address:
            context["matched"] = next((s.name for s in live.servers if _matches(s, host, address)), None)
        if plan:
            # The plan is kept as the last plan: a write, so in a transaction of its own.
            with transaction(ctx.sessions) as writer:
                context["plan"] = flows.plan(writer, ctx=ctx, viewer=principal, code=code)
            context["fresh_plan"] = True
    except AppError as exc:
        context["cloud_error"] = exc.message
    return context


@router.get("/cloud/{code}")
def cloud_agency(
    *,
    request: Request,
    code: str,
    plan: bool = False,
    queued: str = Query("", max_length=36),
    saved: bool = False,
    host: str = Query("", max_length=255),
    address: str = Query("", max_length=64),
    principal: kit.PagePrincipal,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    """One agency on the cloud, read now; `?plan=1` compares the spec with the cloud (a read)."""
    kit.require(principal, Permission.CLOUD_READ)
    context = _agency_context(session, request, ctx, principal, code, plan=plan, queued=queued,
                              host=host.strip(), address=address.strip())
    context["saved"] = saved
    return kit.render(request, "cloud_agency.html", context)


@router.post("/cloud/{code}/apply")
def cloud_apply(*, request: Request, code: str, csrf: str = Form("", max_length=200), ctx: Ctx) -> Response:
    """Queue an apply of the agency's spec; it runs in the background once this transaction committed."""
    kit.form_page(request, f"/cloud/{quote(code)}")
    with transaction(ctx.sessions) as session:
        principal = kit.authenticate_page(request, session, ctx)
        kit.check_csrf(request, csrf)
        kit.require(principal, Permission.CLOUD_WRITE)
        operation_id = flows.request_apply(session, ctx=ctx, actor=principal, code=code).id
    flows.submit_apply(ctx, operation_id=operation_id)
    return RedirectResponse(f"/cloud/{quote(code)}?" + urlencode({"queued": operation_id}), status_code=303)


# --- the onboarding spec form --------------------------------------------------------------------

class SpecRefused(AppError):
    """The spec form's input was refused: every field with its reason (`fields`)."""

    code = "invalid"

    def __init__(self, fields: dict[str, str], status_code: int = 422) -> None:
        super().__init__("; ".join(f"{field}: {reason}" for field, reason in fields.items()),
                         field=next(iter(fields), None))
        self.fields = fields
        self.status_code = status_code


def _submitted(form: dict[str, Any]) -> dict[str, Any]:
    """The form as a spec body (what the API's PUT takes), with the ingress rows left empty dropped."""
    rules = [{name: (value.strip() or None) if name.startswith("port") else value.strip()
              for name, value in rule.items()} for rule in form["ingress"]]
    return {"quotas": {name: form[name].strip() for name in QUOTAS}, "cidr": form["cidr"].strip() or None,
            "ingress": [rule for rule in rules if any(rule.values())],
            "public_key": form["public_key"].strip() or None}


def _validated(body: dict[str, Any]) -> OnboardingSpecIn:
    """The API's model over the form's body; every refused field named as the API names it."""
    try:
        return OnboardingSpecIn.model_validate(body)
    except ValidationError as exc:
        fields: dict[str, str] = {}
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "spec"
            fields.setdefault(field, error["msg"])
        raise SpecRefused(fields) from None


@router.post("/cloud/{code}/spec")
def cloud_spec(
    *,
    request: Request,
    code: str,
    instances: str = Form("", max_length=20),
    cores: str = Form("", max_length=20),
    ram_mb: str = Form("", max_length=20),
    volumes: str = Form("", max_length=20),
    cidr: str = Form("", max_length=43),
    protocol: Annotated[list[str], Form()] = [],  # noqa: B006  (FastAPI copies form defaults)
    port_min: Annotated[list[str], Form()] = [],  # noqa: B006
    port_max: Annotated[list[str], Form()] = [],  # noqa: B006
    remote_cidr: Annotated[list[str], Form()] = [],  # noqa: B006
    public_key: str = Form("", max_length=16384),
    csrf: str = Form("", max_length=200),
    ctx: Ctx,
) -> Response:
    """Save the agency's onboarding spec from its page: the API's checks and audit (cloud service put_spec), in one
    transaction; a refusal shows the page again with each field's reason and nothing changed."""
    kit.form_page(request, f"/cloud/{quote(code)}")
    rows = [dict(zip(RULE_FIELDS, values, strict=True))
            for values in zip_longest(protocol, port_min, port_max, remote_cidr, fillvalue="")]
    form: dict[str, Any] = {"instances": instances, "cores": cores, "ram_mb": ram_mb, "volumes": volumes,
                            "cidr": cidr, "public_key": public_key, "ingress": rows}
    body = _submitted(form)
    try:
        with transaction(ctx.sessions) as session:
            principal = kit.authenticate_page(request, session, ctx)
            kit.check_csrf(request, csrf)
            kit.require(principal, Permission.CLOUD_WRITE)
            try:
                service.put_spec(session, clock=ctx.clock, actor=principal, cloud=ctx.cloud.cloud_name, code=code,
                                 data=_validated(body))
            except SpecRefused as exc:
                raise kit.FormRejected(exc) from exc
            except AppError as exc:  # the service's refusals: a field's (bad or overlapping network...) or not
                refused = (SpecRefused({exc.field: exc.message.removeprefix(f"{exc.field}: ")}, exc.status_code)
                           if exc.field else exc)
                raise kit.FormRejected(refused) from exc
    except kit.FormRejected as rejected:
        # Rolled back: the page again, read afresh, with what was sent (its empty rules dropped) and why.
        with transaction(ctx.sessions) as session:
            context = _agency_context(session, request, ctx, request.state.viewer.principal, code)
        blank = [dict.fromkeys(RULE_FIELDS, "") for _ in range(BLANK_RULES)]
        context["spec_form"] = {**form, "ingress": [{k: v or "" for k, v in rule.items()}
                                                    for rule in body["ingress"]] + blank}
        error = rejected.error
        context["spec_errors"] = error.fields if isinstance(error, SpecRefused) else {}
        context["spec_error"] = error
        return kit.render(request, "cloud_agency.html", context, status_code=error.status_code)
    return RedirectResponse(f"/cloud/{quote(code)}?saved=1#spec-heading", status_code=303)
