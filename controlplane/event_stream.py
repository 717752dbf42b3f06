"""Server-Sent Events of a stored, ordered event log (a job's events, a wave's events): one loop for every stream.

The loop polls the log for what came after the last id it sent, sends each new entry as one event (its id is the
entry's, so a client that reconnects with Last-Event-ID resumes after it), and, once the source has finished and
nothing is left, sends one `end` event and closes. sse-starlette frames the events, sends a keep-alive comment
every `keepalive_seconds` (proxies close quiet connections) and stops the loop when the client goes away.

Wire format (what browsers' EventSource and the CLI read):
    retry: 2000                        once, first
    id: <cursor>\\nevent: <name>\\ndata: <json>   per entry, in order
    : keep-alive                       while quiet
    event: end\\ndata: <json>           last

Base level: knows no domain; a domain passes its reads as callables.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar

import anyio
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

POLL_SECONDS = 0.5
KEEPALIVE_SECONDS = 15.0
RETRY_MILLISECONDS = 2000
BATCH = 500  # entries a poll should return at most; the loop polls again at once after a batch
SEPARATOR = "\n"

E = TypeVar("E")
S = TypeVar("S")


def as_json(entry: Any) -> str:
    """The default serialisation: a pydantic model's JSON."""
    text: str = entry.model_dump_json()
    return text


def _event(data: str | None = None, **fields: Any) -> ServerSentEvent:
    return ServerSentEvent(data, sep=SEPARATOR, **fields)


def keepalive() -> ServerSentEvent:
    return _event(comment="keep-alive")


async def follow(
    poll: Callable[[int], tuple[Sequence[E], S]],
    *,
    after: int,
    event: str,
    cursor: Callable[[E], int],
    finished: Callable[[S], bool],
    end: Callable[[S], Any],
    serialise: Callable[[E], str] = as_json,
    poll_seconds: float = POLL_SECONDS,
) -> AsyncIterator[ServerSentEvent]:
    """The events of a log from `after` on.

    `poll(after)` reads, in one transaction, the entries after the cursor `after` (in order, at most BATCH) and the
    source's state; it runs in a worker thread. `finished(state)` says the source will add nothing more; then,
    once a poll brought nothing new, the stream ends with an `end` event whose data is `end(state)` as JSON.
    """
    yield _event(retry=RETRY_MILLISECONDS)
    while True:
        batch, state = await run_in_threadpool(poll, after)
        for entry in batch:
            after = cursor(entry)
            yield _event(serialise(entry), id=str(after), event=event)
        if batch:
            continue  # drain what is there before waiting
        if finished(state):
            yield _event(json.dumps(end(state)), event="end")
            return
        await anyio.sleep(poll_seconds)


def event_stream(
    poll: Callable[[int], tuple[Sequence[E], S]],
    *,
    after: int,
    event: str,
    cursor: Callable[[E], int],
    finished: Callable[[S], bool],
    end: Callable[[S], Any],
    serialise: Callable[[E], str] = as_json,
    poll_seconds: float = POLL_SECONDS,
    keepalive_seconds: float = KEEPALIVE_SECONDS,
) -> EventSourceResponse:
    """The response streaming `follow(...)` (see there), with keep-alive comments and disconnect handling."""
    return EventSourceResponse(
        follow(poll, after=after, event=event, cursor=cursor, finished=finished, end=end, serialise=serialise,
               poll_seconds=poll_seconds),
        sep=SEPARATOR, ping=keepalive_seconds, ping_message_factory=keepalive,
        headers={"Cache-Control": "no-cache"},
    )
