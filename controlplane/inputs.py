"""Text a caller sends holds no control characters (NUL, escape sequences, ...): tab, line feed and carriage return
only. Request bodies are checked by their models (every request model derives from Input), the path and the query
string by a middleware before any route runs: a NUL would otherwise reach PostgreSQL (which refuses it: a 500) or
be stored on SQLite and printed to a terminal later.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Mapping
from datetime import date
from typing import Annotated, Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, BeforeValidator, ValidationInfo, field_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from controlplane.errors import error_body

_ALLOWED = frozenset("\t\n\r")
_ISO_DAY = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_day(value: Any) -> Any:
    """Only YYYY-MM-DD text is a day (pydantic alone would read 0 or "0" as 1970-01-01)."""
    if not isinstance(value, date) and not (isinstance(value, str) and _ISO_DAY.fullmatch(value)):
        raise ValueError("a day as YYYY-MM-DD")
    return value


# A calendar day as a caller gives it: in bodies and in queries.
IsoDate = Annotated[date, BeforeValidator(_iso_day)]


def control_character(text: str) -> str | None:
    """The first control character of `text` as its code point (such as "U+0000"), or None."""
    for char in text:
        if char not in _ALLOWED and unicodedata.category(char) == "Cc":
            return f"U+{ord(char):04X}"
    return None


def find_control_character(value: Any, where: str = "") -> tuple[str, str] | None:
    """(path, code point) of the first control character in a string, or in the keys and strings of nested data."""
    if isinstance(value, str):
        found = control_character(value)
        return (where, found) if found else None
    items: list[tuple[str, Any]] = []
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = control_character(key) if isinstance(key, str) else None
            name = key.encode("unicode_escape").decode("ascii") if found else str(key)  # shown, never echoed raw
            path = f"{where}.{name}" if where else name
            if found:
                return path, found
            items.append((path, item))
    elif isinstance(value, list | tuple):
        items = [(f"{where}.{index}" if where else str(index), item) for index, item in enumerate(value)]
    for path, item in items:
        if (hit := find_control_character(item, path)) is not None:
            return hit
    return None


class Input(BaseModel):
    """The base of every request body: no control character in any text, however deep."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_control_characters(cls, value: Any, info: ValidationInfo) -> Any:
        if isinstance(value, BaseModel):  # a nested model checks its own fields
            return value
        hit = find_control_character(value)
        if hit is not None:
            path, char = hit
            inside = f" (at {info.field_name}.{path})" if path else ""
            raise ValueError(f"control character {char} not allowed{inside}; text may hold tabs and line breaks only")
        return value


class RefuseControlCharacters:
    """ASGI middleware: 422 naming the parameter when the path or the query string holds a control character."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = _in_request_line(scope)
        if found is None:
            await self.app(scope, receive, send)
            return
        field, char = found
        body = json.dumps(error_body("invalid", f"{field}: control character {char} not allowed", field)).encode()
        await send({"type": "http.response.start", "status": 422,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


def _in_request_line(scope: Scope) -> tuple[str, str] | None:
    path = scope.get("path", "")
    if (char := control_character(path)) is not None:
        return "path", char
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True, errors="replace"):
        if (char := control_character(name)) is not None:
            return "query", char
        if (char := control_character(value)) is not None:
            return name, char
    return None
