"""Mounts the server-rendered pages: the page kit's static files and every domain's page router.

The pages themselves live with their domains (`<domain>/pages.py`, on the kit in controlplane.web.kit); this
module only assembles them, so nothing in web/ depends on a domain's pages but this.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from controlplane.auth.pages import router as auth_pages
from controlplane.automation.pages import router as automation_pages
from controlplane.cloud.pages import router as cloud_pages
from controlplane.compliance.pages import router as compliance_pages
from controlplane.inventory.pages import router as inventory_pages
from controlplane.rooms.pages import router as rooms_pages
from controlplane.waves.pages import router as waves_pages
from controlplane.web import kit

PAGES: tuple[APIRouter, ...] = (auth_pages, compliance_pages, cloud_pages, automation_pages, inventory_pages,
                                waves_pages, rooms_pages)


def mount_web(app: FastAPI) -> None:
    """Serve the pages and their static files on `app` (called by create_app; nothing built at import)."""
    app.state.web_templates = kit.templates()
    app.mount("/static", kit.static_files(), name="static")
    for pages in PAGES:
        app.include_router(pages)
