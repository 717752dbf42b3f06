"""Pages of the migration inventory (reads only): /systems, /systems/{code} and /adoption.

Registered by controlplane.web.router.mount_web; the same cookie login, error pages and headers as the other pages.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request, Response

from controlplane.auth.deps import DbSession
from controlplane.auth.roles import Permission, Principal
from controlplane.errors import InvalidInput
from controlplane.migration import inventory
from controlplane.migration.domain import SystemStatus
from controlplane.web.router import PageRoute, _render, _require, page_principal

router = APIRouter(route_class=PageRoute, include_in_schema=False)


def _system_status(text: str) -> SystemStatus | None:
    text = text.strip()
    if not text:
        return None
    try:
        return SystemStatus(text)
    except ValueError:
        raise InvalidInput(f"unknown system status '{text}'; one of {', '.join(SystemStatus)}",
                           field="status") from None


@router.get("/systems")
def systems(
    *,
    request: Request,
    agency: str = Query("", max_length=16),
    status: str = Query("", max_length=16),
    principal: Principal = Depends(page_principal),
    session: DbSession,
) -> Response:
    """The systems the viewer may see (a ministry: its own agency's), with their unknown components."""
    _require(principal, Permission.MIGRATION_READ)
    chosen = _system_status(status)
    rows = [inventory.system_read(row) for row in inventory.list_systems(
        session, viewer=principal, agency=agency.strip() or None, status=chosen)]
    agencies = sorted({row.agency.code for row in inventory.list_systems(session, viewer=principal)})
    return _render(request, "systems.html", {
        "systems": rows, "agencies": agencies, "agency": agency.strip(), "status": chosen.value if chosen else "",
        "statuses": [s.value for s in SystemStatus]})


@router.get("/systems/{code}")
def system_page(
    *, request: Request, code: str, principal: Principal = Depends(page_principal), session: DbSession
) -> Response:
    """One system: its facts and each component's catalogue entry and open-source target, or its flag."""
    _require(principal, Permission.MIGRATION_READ)
    detail = inventory.system_detail(inventory.get_system(session, viewer=principal, code=code))
    return _render(request, "system_detail.html", {"system": detail})


@router.get("/adoption")
def adoption(*, request: Request, principal: Principal = Depends(page_principal), session: DbSession) -> Response:
    """The open-source share of each agency's components, now and after its legacy systems migrate."""
    _require(principal, Permission.MIGRATION_READ)
    return _render(request, "adoption.html", {"report": inventory.adoption_report(session, viewer=principal)})
