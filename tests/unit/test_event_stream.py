"""The one Server-Sent Events loop (controlplane.event_stream), without a server: its events in order from the
cursor on, its end once the source has finished and everything was sent, its keep-alive comments while quiet, and
its stop when the client goes away. The response is driven as an ASGI app with a fake receive and send."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from controlplane.event_stream import event_stream, follow


class Entry(BaseModel):
    seq: int
    text: str


@dataclass
class Log:
    """An event log the loop polls: entries appended by `add`, `done` once the source has finished."""

    entries: list[Entry] = field(default_factory=list)
    done: bool = False
    polls: list[int] = field(default_factory=list)
    batch: int = 2
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, *texts: str, done: bool = False) -> None:
        with self.lock:
            for text in texts:
                self.entries.append(Entry(seq=len(self.entries) + 1, text=text))
            self.done = done

    def poll(self, after: int) -> tuple[Sequence[Entry], bool]:
        with self.lock:
            self.polls.append(after)
            return [e for e in self.entries if e.seq > after][: self.batch], self.done


def _stream(log: Log, after: int = 0, **options: Any) -> Any:
    return dict(after=after, event="thing", cursor=lambda e: e.seq, finished=lambda done: done,
                end=lambda done: {"done": done}, **options)


async def _collect(log: Log, after: int = 0, **options: Any) -> list[str]:
    return [event.encode().decode() async for event in follow(log.poll, **_stream(log, after, **options))]


def test_events_in_order_from_the_cursor_then_the_end() -> None:
    log = Log()
    log.add("a", "b", "c", "d", "e", done=True)
    messages = anyio.run(_collect, log, 1)
    assert messages[0] == "retry: 2000\n\n"
    assert messages[1:-1] == [f'id: {n}\nevent: thing\ndata: {{"seq":{n},"text":"{t}"}}\n\n'
                              for n, t in zip(range(2, 6), "bcde", strict=True)]
    assert messages[-1] == 'event: end\ndata: {"done": true}\n\n'
    # Batches are drained without waiting; the end comes only after a poll found nothing new.
    assert log.polls == [1, 3, 5]


def test_the_end_waits_for_the_source_to_finish_and_nothing_is_lost() -> None:
    log = Log()
    log.add("a")

    async def scenario() -> list[str]:
        seen: list[str] = []

        async def feed() -> None:
            await anyio.sleep(0.05)
            log.add("b")
            await anyio.sleep(0.05)
            log.add("c", done=True)  # the last entry and the end together: the entry still comes first

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(feed)
            async for event in follow(log.poll, **_stream(log, poll_seconds=0.01)):
                seen.append(event.encode().decode())
        return seen

    messages = anyio.run(scenario)
    ids = [line for m in messages for line in m.splitlines() if line.startswith("id: ")]
    assert ids == ["id: 1", "id: 2", "id: 3"]
    assert messages[-1].startswith("event: end\n") and sum(m.startswith("event: end") for m in messages) == 1


def test_a_custom_serialisation() -> None:
    log = Log()
    log.add("x", done=True)
    messages = anyio.run(lambda: _collect(log, serialise=lambda e: e.text.upper()))
    assert messages[1] == "id: 1\nevent: thing\ndata: X\n\n"


async def _drive(response: Any, *, disconnect_after: float | None = None) -> tuple[int, dict[str, str], str]:
    """Run the response as an ASGI app; the client goes away after `disconnect_after` seconds (never if None)."""
    start: dict[str, Any] = {}
    body: list[bytes] = []
    gone = anyio.Event()

    async def receive() -> dict[str, Any]:
        if disconnect_after is None:
            await gone.wait()
        else:
            await anyio.sleep(disconnect_after)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        else:
            body.append(message.get("body", b""))
            if not message.get("more_body", False):
                gone.set()

    scope = {"type": "http", "method": "GET", "path": "/", "headers": []}
    with anyio.fail_after(10):
        await response(scope, receive, send)
    headers = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers, b"".join(body).decode()


def test_the_response_sends_keep_alive_comments_while_quiet() -> None:
    log = Log()
    log.add("a")
    timer = threading.Timer(0.35, log.add, args=("b",), kwargs={"done": True})
    timer.start()
    try:
        response = event_stream(log.poll, **_stream(log, poll_seconds=0.02, keepalive_seconds=0.1))
        status, headers, body = anyio.run(_drive, response)
    finally:
        timer.cancel()
    assert status == 200 and headers["content-type"].startswith("text/event-stream")
    assert headers["cache-control"] == "no-cache" and headers["x-accel-buffering"] == "no"
    messages = [m for m in body.split("\n\n") if m]
    assert messages[0] == "retry: 2000" and messages[1].startswith("id: 1\nevent: thing\n")
    assert messages.count(": keep-alive") >= 2
    assert messages[-2].startswith("id: 2\n") and messages[-1] == 'event: end\ndata: {"done": true}'
    # Keep-alives are comments between whole events, never inside one.
    assert all(m == ": keep-alive" or m.startswith(("retry:", "id:", "event:")) for m in messages)


@pytest.mark.parametrize("keepalive", [0.05, 60.0])
def test_the_loop_stops_when_the_client_goes_away(keepalive: float) -> None:
    log = Log()  # never finishes
    response = event_stream(log.poll, **_stream(log, poll_seconds=0.01, keepalive_seconds=keepalive))
    status, _headers, body = anyio.run(lambda: _drive(response, disconnect_after=0.2))
    assert status == 200 and body.startswith("retry: 2000\n\n") and "event: end" not in body
    polls = len(log.polls)
    assert polls > 3
    anyio.run(anyio.sleep, 0.1)
    assert len(log.polls) == polls  # nothing polls the log any more
