"""The page kit: what every server-rendered page is built on, whichever domain it belongs to.

Each domain keeps its pages in its own `pages.py` on `page_router()`; controlplane.web.router mounts them all.

- Login: pages authenticate with the `cp_token` cookie (an access token from the same login service as the API;
  the JSON API keeps accepting only the Authorization header). `PagePrincipal` (a dependency) or
  `authenticate_page` (inside a form's own transaction) give the caller, or send the browser to /login.
- Permissions: `require(principal, permission)` -> a 403 page.
- CSRF: every state-changing form POST except /login carries a `csrf` field (`csrf_field` names it), the
  HMAC-SHA256 of the token's digest under the secret key; `check_csrf` refuses anything else with a 403 page.
- Rendering: `render` fills a template with the common context (language, `t`, the viewer, the menu, formatters).
  Errors of page routes (`PageError`, any AppError, bad parameters) become HTML error pages (`PageRoute`).
- Headers: `SECURITY_HEADERS` on every page (no script at all); `allow_script` lets one response run the inline
  scripts that carry its nonce (`new_nonce`), for the live pages' progressive enhancement.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from fastapi import APIRouter, Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.background import BackgroundTask

from controlplane.auth import service as auth_service
from controlplane.auth.deps import Ctx, DbSession
from controlplane.auth.roles import Permission, Principal
from controlplane.auth.security import TOKEN_PREFIX, digest
from controlplane.context import AppContext
from controlplane.errors import AppError
from controlplane.web.i18n import (
    DEFAULT_LANG,
    LANGUAGES,
    Translator,
    format_day,
    format_forecast,
    format_local,
    format_percent,
    normalise_lang,
    translator,
)

WEB_DIR = Path(__file__).parent
TOKEN_COOKIE = "cp_token"
LANG_COOKIE = "cp_lang"
LANG_COOKIE_MAX_AGE = 365 * 24 * 3600
DEFAULT_PAGE = "/dashboard"
LANG_NAMES = {"ko": "한국어", "en": "English"}
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


# --- errors a page turns into a response ---------------------------------------------------------

class LoginRequired(Exception):
    """No valid session cookie: the page answers 303 to /login?next=<where the user was going>."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class PageError(AppError):
    """An error whose message is a UI string (translated when the page is rendered)."""

    def __init__(self, key: str, *, status_code: int, field: str | None = None, **values: Any) -> None:
        super().__init__(key, field=field)
        self.status_code = status_code
        self.key = key
        self.values = values


class FormRejected(Exception):
    """A form's data was refused inside its transaction: raised to roll it back, caught outside to show the
    form again with the reason."""

    def __init__(self, error: AppError) -> None:
        super().__init__(error.message)
        self.error = error


class PageRoute(APIRoute):
    """Renders errors of page routes as HTML pages (the JSON handlers stay for the API), sets the
    language cookie when `?lang=` is given, and adds the pages' security headers."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            # Only reads go through the DB dependency on pages: a swallowed error here must never let a
            # partial write commit, so every write uses its own transaction() inside the route.
            try:
                response = await handler(request)
            except LoginRequired as exc:
                response = RedirectResponse("/login?" + urlencode({"next": exc.next_path}), status_code=303)
                if request.cookies.get(TOKEN_COOKIE):
                    clear_token_cookie(response, context_of(request))
            except AppError as exc:
                response = error_page(request, exc)
            except RequestValidationError as exc:
                errors = exc.errors()
                loc = errors[0].get("loc", ()) if errors else ()
                field = str(loc[-1]) if loc else None
                response = error_page(request, PageError("error.invalid_request", status_code=422, field=field))
            _finish(request, response)
            return response

        return page_handler


def page_router() -> APIRouter:
    """A router for one domain's pages: errors as pages, security headers, no OpenAPI entries."""
    return APIRouter(route_class=PageRoute, include_in_schema=False)


# --- the viewer and the request ------------------------------------------------------------------

@dataclass(frozen=True)
class Viewer:
    principal: Principal
    csrf: str


@dataclass(frozen=True)
class NavItem:
    href: str
    label: str
    current: bool


@dataclass(frozen=True)
class NavGroup:
    id: str
    label: str
    links: list[NavItem]


def context_of(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


def page_lang(request: Request) -> str:
    """?lang= wins, then the cp_lang cookie, then Korean."""
    return (normalise_lang(request.query_params.get("lang")) or normalise_lang(request.cookies.get(LANG_COOKIE))
            or DEFAULT_LANG)


def texts(request: Request) -> Translator:
    """`t(key, **values)` in the page's language."""
    return translator(page_lang(request))


def here(request: Request) -> str:
    query = request.url.query
    return request.url.path + (f"?{query}" if query else "")


def form_page(request: Request, path: str) -> None:
    """Name the page a form POST belongs to: where a login goes back to, and what the language links of a
    re-rendered form lead to."""
    request.state.page_path = path


def safe_next(value: str | None) -> str:
    """A same-site relative path to go to after login; anything else (another site, a scheme) -> /dashboard."""
    value = (value or "").strip()
    if (not value.startswith("/") or value.startswith("//") or "\\" in value
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)):
        return DEFAULT_PAGE
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path in ("/login", "/logout"):
        return DEFAULT_PAGE
    return value


# --- login, permissions, CSRF --------------------------------------------------------------------

def csrf_token(secret_key: str, raw_token: str) -> str:
    """The form token bound to a login session: HMAC-SHA256(secret key, SHA-256 of the access token)."""
    return hmac.new(secret_key.encode(), digest(raw_token).encode(), hashlib.sha256).hexdigest()


def authenticate_page(request: Request, session: Session, ctx: AppContext) -> Principal:
    """The caller behind the session cookie (access tokens only, never API keys), or LoginRequired."""
    raw = request.cookies.get(TOKEN_COOKIE, "")
    principal = None
    if raw.startswith(TOKEN_PREFIX):
        principal = auth_service.resolve_bearer(session, clock=ctx.clock, secret=raw)
    if principal is None:
        # After logging in, a GET page comes back as it was; a form's target is not a page, so its own page is.
        raise LoginRequired(here(request) if request.method == "GET"
                            else getattr(request.state, "page_path", None) or DEFAULT_PAGE)
    request.state.viewer = Viewer(principal, csrf_token(ctx.settings.secret_key, raw))
    return principal


def page_principal(request: Request, session: DbSession, ctx: Ctx) -> Principal:
    return authenticate_page(request, session, ctx)


# The logged-in caller of a page (a dependency): anonymous callers are sent to the login form.
PagePrincipal = Annotated[Principal, Depends(page_principal)]


def check_csrf(request: Request, submitted: str) -> None:
    """Refuse (403 page) a form whose `csrf` field is not the viewer's token; call after authenticate_page."""
    viewer: Viewer = request.state.viewer
    if not submitted or not hmac.compare_digest(viewer.csrf.encode(), submitted.encode()):
        raise PageError("error.csrf", status_code=403, field="csrf")


def require(principal: Principal, permission: Permission) -> None:
    """Refuse (403 page) a caller without `permission`."""
    if not principal.has(permission):
        raise PageError("error.permission", status_code=403, role=principal.role.value)


def set_token_cookie(response: Response, ctx: AppContext, raw: str) -> None:
    response.set_cookie(TOKEN_COOKIE, raw, max_age=ctx.settings.token_ttl_minutes * 60, path="/",
                        secure=ctx.settings.cookie_secure, httponly=True, samesite="lax")


def clear_token_cookie(response: Response, ctx: AppContext) -> None:
    response.delete_cookie(TOKEN_COOKIE, path="/", secure=ctx.settings.cookie_secure, httponly=True,
                           samesite="lax")


# --- headers -------------------------------------------------------------------------------------

def new_nonce() -> str:
    return secrets.token_urlsafe(16)


def allow_script(response: Response, nonce: str) -> Response:
    """Let this response run the inline scripts that carry `nonce` (and no other script)."""
    response.headers["Content-Security-Policy"] = CSP.replace("script-src 'none'", f"script-src 'nonce-{nonce}'")
    return response


def _finish(request: Request, response: Response) -> None:
    lang = normalise_lang(request.query_params.get("lang"))
    if lang:
        response.set_cookie(LANG_COOKIE, lang, max_age=LANG_COOKIE_MAX_AGE, path="/", httponly=True,
                            secure=context_of(request).settings.cookie_secure, samesite="lax")
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)


# --- rendering -----------------------------------------------------------------------------------

def _nav(viewer: Viewer | None, path: str, t: Translator) -> list[NavGroup]:
    if viewer is None:
        return []
    principal = viewer.principal

    def item(href: str, key: str) -> NavItem:
        return NavItem(href, t(key), path == href or path.startswith(href + "/"))

    infra = []
    if principal.has(Permission.CLOUD_READ):
        infra.append(item("/cloud", "nav.cloud"))
    if principal.has(Permission.JOBS_READ):
        infra.append(item("/jobs", "nav.jobs"))
    if principal.has(Permission.CREDENTIALS_READ):
        infra.append(item("/credentials", "nav.credentials"))
    if principal.has(Permission.MIGRATION_READ):
        infra.append(item("/systems", "nav.systems"))
        infra.append(item("/adoption", "nav.adoption"))
        infra.append(item("/waves", "nav.waves"))
    if principal.has(Permission.AGENCIES_READ):
        infra.append(item("/agencies", "nav.agencies"))
    if principal.has(Permission.AUDIT_READ):
        infra.append(item("/audit", "nav.audit"))
    meetings, ministries = [], []
    if principal.has(Permission.COMPLIANCE_READ):
        meetings.append(item("/meetings", "nav.meeting_list"))
        ministries.append(item("/dashboard", "nav.dashboard"))
        if principal.scoped and principal.agency_code:
            ministries.append(item(f"/ministries/{principal.agency_code}", "nav.my_ministry"))
        ministries.append(item("/ministries", "nav.ministry_status"))
    vc = [item(href, key) for href, key in (("/vc/rooms", "nav.vc_rooms"), ("/vc/sites", "nav.vc_sites"),
                                            ("/vc/centres", "nav.vc_centres"), ("/vc/bridges", "nav.vc_bridges"))
          if principal.has(Permission.ROOMS_READ)]
    groups = [NavGroup("infra", t("nav.infra"), infra), NavGroup("meetings", t("nav.meetings"), meetings),
              NavGroup("ministries", t("nav.ministries"), ministries), NavGroup("vc", t("nav.vc"), vc)]
    return [g for g in groups if g.links]


def _lang_links(request: Request, lang: str) -> list[dict[str, Any]]:
    # A page re-rendered after a POST links back to its GET address, not to the form's target.
    base = getattr(request.state, "page_path", None) if request.method != "GET" else here(request)
    parts = urlsplit(base or DEFAULT_PAGE)
    params = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
              if k not in ("lang", "recorded", "queued", "canceled", "saved")]
    return [
        {"code": code, "label": LANG_NAMES[code], "current": code == lang,
         "href": parts.path + "?" + urlencode([*params, ("lang", code)])}
        for code in LANGUAGES
    ]


def _common_context(request: Request) -> dict[str, Any]:
    lang = page_lang(request)
    t = translator(lang)
    viewer: Viewer | None = getattr(request.state, "viewer", None)
    timezone = context_of(request).settings.timezone
    return {
        "lang": lang,
        "t": t,
        "viewer": viewer,
        "principal": viewer.principal if viewer else None,
        "csrf": viewer.csrf if viewer else "",
        "nav": _nav(viewer, request.url.path, t),
        "lang_links": _lang_links(request, lang),
        "pct": format_percent,
        "forecast": lambda value: format_forecast(value, t),
        "local_time": lambda value: format_local(value, timezone),
        "day": format_day,
        "name_of": lambda obj: getattr(obj, "name_en" if lang == "en" else "name_ko"),
    }


def templates() -> Jinja2Templates:
    """The page templates, each rendered with the common context (built once per app by mount_web)."""
    return Jinja2Templates(directory=WEB_DIR / "templates", context_processors=[_common_context])


def static_files() -> StaticFiles:
    return StaticFiles(directory=WEB_DIR / "static")


def render(request: Request, name: str, context: dict[str, Any], status_code: int = 200,
           background: BackgroundTask | None = None) -> Response:
    """The template `name` filled with `context` and the common context."""
    pages: Jinja2Templates = request.app.state.web_templates
    return pages.TemplateResponse(request, name, context, status_code=status_code, background=background)


def error_page(request: Request, exc: AppError) -> Response:
    t = texts(request)
    message = t(exc.key, **exc.values) if isinstance(exc, PageError) else exc.message
    heading_key = f"error.{exc.status_code}"
    heading = t(heading_key) if heading_key != t(heading_key) else t("error.title")
    return render(request, "error.html", {"status": exc.status_code, "heading": heading, "message": message,
                                          "field": exc.field}, status_code=exc.status_code)
