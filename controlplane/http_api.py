"""What every route of the JSON API shares: bounded numbers in paths and queries, the error body, and an OpenAPI
document that declares every status a route answers with.

Statuses every route of a kind can answer are declared here, once, in the document the app serves (declare_statuses):
401 and 403 come from the dependencies that check the caller (they carry `openapi_statuses`), 404 from a path
parameter naming something, 400 and 413 from a body (unparsable, too large), 422 from any parameter or body, all
with the uniform error body. What only some routes answer (409, 429, 503 ...) each route declares itself with
`errors(...)`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, Field

MAX_ID = 2**31 - 1  # ids are INTEGER columns
MAX_OFFSET = 10**7

# A row's id in a path; a value past the bounds is a 422, never an overflow in the database.
RowId = Annotated[int, Path(ge=1, le=MAX_ID, description="the id")]
# The sequence number or id after which to list (0: from the start).
After = Annotated[int, Query(ge=0, le=MAX_ID, description="only what comes after this sequence number or id")]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET, description="how many to skip")]

API_PREFIX = "/api/"


class ErrorBody(BaseModel):
    """Every 4xx and 5xx of the API: what went wrong (code), why (message), where (field), and per bad field or row
    the details."""

    code: str = Field(description="e.g. invalid, not_found, conflict, forbidden, too_large, cloud_unavailable")
    message: str
    field: str | None
    details: list[dict[str, Any]] | None = None


DESCRIPTIONS = {
    400: "the body cannot be parsed (not JSON, a broken form)",
    401: "no valid token or API key",
    403: "the caller's role may not do this",
    404: "what the path (or a parameter) names does not exist, or is not the caller's to see",
    409: "it conflicts with the current state",
    413: "the body is larger than the limit",
    422: "a parameter or the body is invalid: `field` names it",
    429: "too many attempts: retry after `Retry-After` seconds",
    502: "the cloud answered with an error",
    503: "a component this needs is not available now (the cloud, the durable engine, a full queue)",
    504: "the cloud did not answer in time",
}


def errors(*statuses: int, **described: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` of a route: the statuses it answers with the error body; `described` overrides a description
    (keyed `s409`)."""
    return {status: {"model": ErrorBody, "description": described.get(f"s{status}", DESCRIPTIONS[status])}
            for status in statuses}


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    """The route's own dependant and those of its dependencies, however deep."""
    yield dependant
    for dependency in dependant.dependencies:
        yield from _dependants(dependency)


def route_statuses(route: APIRoute) -> set[int]:
    """The error statuses a route answers with by its kind (see the module's docstring)."""
    dependants = list(_dependants(route.dependant))
    statuses = {status for d in dependants for status in getattr(d.call, "openapi_statuses", ())}
    if any(d.path_params for d in dependants):
        statuses.add(404)
    if route.body_field is not None:
        statuses |= {400, 413, 422}
    if any(d.path_params or d.query_params or d.header_params or d.cookie_params for d in dependants):
        statuses.add(422)
    return statuses


def _error_response(status: int) -> dict[str, Any]:
    return {"description": DESCRIPTIONS[status],
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}


def declare_statuses(app: FastAPI) -> None:
    """Make the app's OpenAPI document declare, on every API operation, the statuses of its kind (and the error
    body for 422 instead of FastAPI's own, which this app never sends)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        document = generate()  # FastAPI's, cached by it: what is added here stays
        schemas = document.setdefault("components", {}).setdefault("schemas", {})
        schemas.setdefault("ErrorBody", ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}"))
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        for context in iter_route_contexts(app.routes):
            route = context.original_route
            if not isinstance(route, APIRoute) or not str(context.path_format).startswith(API_PREFIX):
                continue
            operations = document["paths"].get(context.path_format, {})
            for method in route.methods or ():
                operation = operations.get(method.lower())
                if operation is None:
                    continue
                responses = operation.setdefault("responses", {})
                for status in sorted(route_statuses(route)):
                    declared = responses.get(str(status))
                    if declared is None or "HTTPValidationError" in str(declared):
                        responses[str(status)] = _error_response(status)
        return document

    app.openapi = openapi  # type: ignore[method-assign]
