"""Pages of the inventory domain: the agencies' systems (/systems), one system with its components' catalogue
entries and the waves that migrate it (/systems/{code}), and the open-source adoption report (/adoption)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from fastapi import Query, Request, Response
from sqlalchemy.orm import Session

from controlplane.auth.deps import DbSession
from controlplane.auth.roles import Permission, Principal
from controlplane.errors import InvalidInput
from controlplane.inventory import service
from controlplane.inventory.domain import SystemStatus
from controlplane.waves import service as waves
from controlplane.web import kit

router = kit.page_router()


@dataclass(frozen=True)
class SystemMigration:
    """One migration of a system, in its wave."""

    id: str
    wave_id: int
    wave: str
    wave_state: str
    state: str
    step: str | None
    steps_done: int
    steps: int
    started_at: datetime | None
    finished_at: datetime | None


def _system_status(text: str) -> SystemStatus | None:
    text = text.strip()
    if not text:
        return None
    try:
        return SystemStatus(text)
    except ValueError:
        raise InvalidInput(f"unknown system status '{text}'; one of {', '.join(SystemStatus)}",
                           field="status") from None


def _migrations_of(session: Session, principal: Principal, code: str) -> list[SystemMigration]:
    """The system's migrations, newest wave first, read through the waves' service as the wave pages show them."""
    found = []
    for row in waves.list_waves(session, viewer=principal):
        wave = waves.wave_read(session, row, viewer=principal, detail=False)
        found += [SystemMigration(m.id, wave.id, wave.name, wave.state, m.state.value, m.step, len(m.steps_done),
                                  len(m.steps), m.started_at, m.finished_at)
                  for m in wave.migrations if m.system == code]
    return found


@router.get("/systems")
def systems(
    *,
    request: Request,
    agency: str = Query("", max_length=16),
    status: str = Query("", max_length=16),
    principal: kit.PagePrincipal,
    session: DbSession,
) -> Response:
    """The systems the viewer may see (a ministry: its own agency's), with their unknown components."""
    kit.require(principal, Permission.MIGRATION_READ)
    chosen = _system_status(status)
    rows = [service.system_read(row) for row in service.list_systems(
        session, viewer=principal, agency=agency.strip() or None, status=chosen)]
    agencies = sorted({row.agency.code for row in service.list_systems(session, viewer=principal)})
    return kit.render(request, "systems.html", {
        "systems": rows, "agencies": agencies, "agency": agency.strip(), "status": chosen.value if chosen else "",
        "statuses": [s.value for s in SystemStatus]})


@router.get("/systems/{code}")
def system_page(*, request: Request, code: str, principal: kit.PagePrincipal, session: DbSession) -> Response:
    """One system: its facts, each component's catalogue entry and open-source target (or its flag), and the
    waves that migrate it."""
    kit.require(principal, Permission.MIGRATION_READ)
    detail = service.system_detail(service.get_system(session, viewer=principal, code=code))
    return kit.render(request, "system_detail.html", {
        "system": detail, "migrations": _migrations_of(session, principal, detail.code)})


@router.get("/adoption")
def adoption(*, request: Request, principal: kit.PagePrincipal, session: DbSession) -> Response:
    """The open-source share of each agency's components, now and after its legacy systems migrate."""
    kit.require(principal, Permission.MIGRATION_READ)
    return kit.render(request, "adoption.html", {"report": service.adoption_report(session, viewer=principal)})
