"""HTTP routes for login, the caller's own identity and keys, agencies, users and the audit log."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from controlplane.auth import service
from controlplane.auth.deps import Caller, Ctx, DbSession, client_address, require
from controlplane.auth.roles import ROLE_PERMISSIONS, Permission, Principal
from controlplane.auth.schemas import (
    AgencyCreate,
    AgencyKind,
    AgencyRead,
    AgencyUpdate,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyRead,
    AuditRead,
    Me,
    RevokedRead,
    TokenRequest,
    TokenResponse,
    UnlockRead,
    UserCreate,
    UserRead,
    UserUpdate,
    UserUpdated,
)
from controlplane.errors import InvalidInput
from controlplane.http_api import Offset, RowId, errors

AgenciesReader = Annotated[Principal, Depends(require(Permission.AGENCIES_READ))]
AgenciesWriter = Annotated[Principal, Depends(require(Permission.AGENCIES_WRITE))]
AuditReader = Annotated[Principal, Depends(require(Permission.AUDIT_READ))]
UsersReader = Annotated[Principal, Depends(require(Permission.USERS_READ))]
UsersWriter = Annotated[Principal, Depends(require(Permission.USERS_WRITE))]

router = APIRouter(prefix="/api/v1", tags=["identity"])


async def _token_request(request: Request) -> TokenRequest:
    """Accept JSON or an OAuth2 password form, so both scripts and OAuth2 clients can log in."""
    try:
        if request.headers.get("content-type", "").startswith("application/json"):
            payload = await request.json()
        else:
            payload = dict(await request.form())
        return TokenRequest.model_validate(payload)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "body"
        raise InvalidInput(f"{field}: {err['msg']}", field=field) from exc
    except ValueError as exc:  # not JSON, not UTF-8
        raise InvalidInput("request body is not valid JSON", field="body") from exc


@router.post("/auth/token", response_model=TokenResponse, summary="Log in and get a bearer token",
             responses=errors(400, 401, 422, 429, s401="wrong user name or password",
                              s429="too many failed logins of this name from this address, or from this address: "
                                   "try again after `Retry-After` seconds"),
             openapi_extra={"requestBody": {"required": True, "content": {
                 "application/json": {"schema": TokenRequest.model_json_schema()},
                 "application/x-www-form-urlencoded": {"schema": TokenRequest.model_json_schema()}}}})
async def login(
    *, request: Request, credentials: TokenRequest = Depends(_token_request), ctx: Ctx
) -> TokenResponse:
    raw, token = await run_in_threadpool(
        service.login, ctx.sessions, clock=ctx.clock, username=credentials.username,
        password=credentials.password, ttl=timedelta(minutes=ctx.settings.token_ttl_minutes),
        address=client_address(request, ctx.settings),
    )
    return TokenResponse(access_token=raw, expires_at=token.expires_at)


@router.post("/auth/logout", status_code=204, summary="Revoke the token of this request")
def logout(
    *,
    principal: Caller,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    service.revoke_token(session, clock=ctx.clock, actor=principal)
    return Response(status_code=204)


@router.get("/auth/me", response_model=Me)
def me(principal: Caller) -> Me:
    return Me(
        id=principal.user_id, username=principal.username, role=principal.role, agency_code=principal.agency_code,
        permissions=sorted(p.value for p in ROLE_PERMISSIONS[principal.role]),
    )


@router.get("/auth/api-keys", response_model=list[ApiKeyRead])
def list_api_keys(*, principal: Caller, session: DbSession) -> list[ApiKeyRead]:
    return [ApiKeyRead.model_validate(k) for k in service.list_api_keys(session, user_id=principal.user_id)]


@router.post("/auth/api-keys", response_model=ApiKeyCreated, status_code=201)
def create_api_key(
    *,
    data: ApiKeyCreate,
    principal: Caller,
    session: DbSession,
    ctx: Ctx,
) -> ApiKeyCreated:
    raw, key = service.create_api_key(session, clock=ctx.clock, actor=principal, data=data)
    return ApiKeyCreated(key=raw, **ApiKeyRead.model_validate(key).model_dump())


@router.delete("/auth/api-keys/{key_id}", status_code=204)
def revoke_api_key(
    *,
    key_id: RowId,
    principal: Caller,
    session: DbSession,
    ctx: Ctx,
) -> Response:
    service.revoke_api_key(session, clock=ctx.clock, actor=principal, key_id=key_id)
    return Response(status_code=204)


@router.get("/agencies", response_model=list[AgencyRead], tags=["agencies"])
def list_agencies(
    *,
    kind: AgencyKind | None = None,
    _: AgenciesReader,
    session: DbSession,
) -> list[AgencyRead]:
    return [service.agency_read(a) for a in service.list_agencies(session, kind=kind.value if kind else None)]


@router.get("/agencies/{code}", response_model=AgencyRead, tags=["agencies"])
def get_agency(*, code: str, _: AgenciesReader, session: DbSession) -> AgencyRead:
    return service.agency_read(service.agency_by_code(session, code=code, field="code"))


@router.post("/agencies", response_model=AgencyRead, status_code=201, tags=["agencies"],
             responses=errors(404, 409, s404="the parent agency is unknown", s409="the code is taken"))
def create_agency(
    *,
    data: AgencyCreate,
    principal: AgenciesWriter,
    session: DbSession,
    ctx: Ctx,
) -> AgencyRead:
    return service.agency_read(service.create_agency(session, clock=ctx.clock, actor=principal, data=data))


@router.patch("/agencies/{code}", response_model=AgencyRead, tags=["agencies"], responses=errors(409))
def update_agency(
    *,
    code: str,
    data: AgencyUpdate,
    principal: AgenciesWriter,
    session: DbSession,
    ctx: Ctx,
) -> AgencyRead:
    agency = service.update_agency(session, clock=ctx.clock, actor=principal, code=code, data=data)
    return service.agency_read(agency)


@router.get("/users", response_model=list[UserRead], tags=["users"])
def list_users(*, _: UsersReader, session: DbSession) -> list[UserRead]:
    return [service.user_read(u) for u in service.list_users(session)]


@router.get("/users/{username}", response_model=UserRead, tags=["users"])
def get_user(*, username: str, _: UsersReader, session: DbSession) -> UserRead:
    return service.user_read(service.get_user(session, username=username))


@router.post("/users", response_model=UserRead, status_code=201, tags=["users"],
             responses=errors(404, 409, s404="the agency is unknown", s409="the user name is taken"))
def create_user(
    *,
    data: UserCreate,
    principal: UsersWriter,
    session: DbSession,
    ctx: Ctx,
) -> UserRead:
    return service.user_read(service.create_user(session, clock=ctx.clock, actor=principal, data=data))


@router.patch("/users/{username}", response_model=UserUpdated, tags=["users"],
              summary="Change a user; a new password revokes the user's tokens and API keys (counted in `revoked`)")
def update_user(
    *,
    username: str,
    data: UserUpdate,
    principal: UsersWriter,
    session: DbSession,
    ctx: Ctx,
) -> UserUpdated:
    user, revoked = service.update_user(session, clock=ctx.clock, actor=principal, username=username, data=data)
    return UserUpdated(**service.user_read(user).model_dump(),
                       revoked=RevokedRead(tokens=revoked.tokens, api_keys=revoked.api_keys))


@router.post("/users/{username}/unlock", response_model=UnlockRead, tags=["users"],
             summary="Lift the login throttle of this name from every client address")
def unlock_user(*, username: str, principal: UsersWriter, session: DbSession, ctx: Ctx) -> UnlockRead:
    result = service.unlock_user(session, clock=ctx.clock, actor=principal, username=username)
    return UnlockRead(username=username, cleared=result.cleared, were_locked=result.were_locked)


@router.get("/audit", response_model=list[AuditRead], tags=["audit"])
def list_audit(
    *,
    entity_type: str | None = None,
    actor: str | None = None,
    limit: int = Query(default=100, ge=1, le=1000),
    offset: Offset = 0,
    _: AuditReader,
    session: DbSession,
) -> list[AuditRead]:
    entries = service.list_audit(session, entity_type=entity_type, actor=actor, limit=limit, offset=offset)
    return [AuditRead.model_validate(e) for e in entries]
