"""The command line's kit: what every domain's `cli.py` builds its commands on.

- `context()`: the settings read (a bad setting exits 2 naming it) and an app context with the real adapters, opened
  for one command and closed after it (controlplane.composition builds it).
- `actor()`: who the command line acts as (`cli:<login>`), in the audit log and as the viewer of reads.
- `reports` / `reporting()`: an AppError or a refused body becomes `error: <field>: <message>` on stderr (and its
  detail lines) with the exit code: 0 ok, 1 failed, 2 bad input (an AppError below 500, a body the schema refuses).
- `console`, `table()`: output on stdout. A terminal's tables take its width; piped or captured, they take COLUMNS
  when it is set, else a wide line (never rich's 80 columns); short columns never wrap, long texts fold.
- `StateLines`, `working()`: progress when stdout is not a terminal: one plain line per change, flushed at once.
"""

from __future__ import annotations

import functools
import getpass
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from zoneinfo import ZoneInfo

import typer
from pydantic import BaseModel, ValidationError
from rich.console import Console, ConsoleDimensions, ConsoleOptions, JustifyMethod, RenderResult
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

from controlplane.clock import Clock
from controlplane.composition import opened_context, start_engine, stop_engine
from controlplane.config import Settings
from controlplane.context import AppContext
from controlplane.errors import AppError

P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)

# The width of output that is not a terminal and has no COLUMNS: tables take only what they need of it.
PIPED_WIDTH = 250

# Exit codes of every command.
OK, FAILED, BAD_INPUT = 0, 1, 2


class _Screen(Console):
    """A console whose width is the terminal's; piped or captured, COLUMNS when set, else PIPED_WIDTH (asked at
    each print: tests and pipes swap sys.stdout after import)."""

    @property
    def size(self) -> ConsoleDimensions:
        dimensions = super().size
        if self.is_terminal:
            return dimensions
        columns = os.environ.get("COLUMNS", "")
        return ConsoleDimensions(int(columns) if columns.isdigit() else PIPED_WIDTH, dimensions.height)

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


console: Console = _Screen()
err: Console = Console(stderr=True)


# --- who and where -----------------------------------------------------------------------------------------

def actor() -> str:
    """The CLI's system actor: `cli:<login>`."""
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):  # no name for this uid (a bare container)
        return f"cli:uid-{os.getuid()}"


def settings() -> Settings:
    """The settings; invalid ones exit 2 naming each variable (never its value: it may be a secret)."""
    try:
        return Settings()
    except ValidationError as exc:
        for problem in exc.errors():
            where = ".".join(str(p) for p in problem["loc"])
            reason = problem["msg"].removeprefix("Value error, ")
            say_error(f"invalid settings: {f'CP_{where.upper()}: ' if where else ''}{reason}")
        raise typer.Exit(BAD_INPUT) from None


@contextmanager
def context(*, clock: Clock | None = None) -> Iterator[AppContext]:
    """An app context with the real adapters for one command; closed (cloud gateway, database) afterwards. Its
    clock is this module's `Clock` (tests replace it: `monkeypatch.setattr("controlplane.clikit.Clock", ...)`)."""
    with opened_context(settings(), clock=clock or Clock()) as ctx:
        yield ctx


@contextmanager
def engine_here_or_client(ctx: AppContext) -> Iterator[bool]:
    """For the commands that start long work: the durable engine in this process (True: the embedded default,
    when no server holds it), or a client handing the work to the server's engine (False)."""
    from controlplane.workflows import EngineBusy, WorkflowClient

    try:
        engine = start_engine(ctx, schedules=False)  # this command's own work: no probes, no scheduled reconciles
    except EngineBusy:
        client = WorkflowClient(ctx.settings.effective_workflows_database_url)
        ctx.workflows = client
        try:
            yield False
        finally:
            ctx.workflows = None
            client.stop()
        return
    try:
        yield True
    finally:
        stop_engine(ctx, engine)


def local(value: datetime | None, settings: Settings) -> str:
    """A stored time as people here read it (the settings' zone, Asia/Seoul by default)."""
    return "–" if value is None else value.astimezone(ZoneInfo(settings.timezone)).strftime("%Y-%m-%d %H:%M:%S %Z")


# --- errors and exit codes ---------------------------------------------------------------------------------

def exit_code(exc: AppError) -> int:
    """Bad input (any 4xx: a refused value, an unknown name, a conflict) exits 2; anything else 1."""
    return BAD_INPUT if exc.status_code < 500 else FAILED


def error_text(message: str, field: str | None = None) -> str:
    """'field: message', the field named once (messages often start with it already)."""
    if field and not message.startswith(f"{field}:"):
        return f"{field}: {message}"
    return message


def say_error(message: str, field: str | None = None) -> None:
    """`error: <field>: <message>` on stderr, on one line however narrow the terminal."""
    err.print(f"[red]error:[/] {escape(error_text(message, field))}", soft_wrap=True, highlight=False)


def say_detail(line: str) -> None:
    err.print(escape(line), soft_wrap=True, highlight=False)


def fail(message: str, *, field: str | None = None, code: int = FAILED) -> typer.Exit:
    """Say the error; the Exit to raise (`raise fail(...)`)."""
    say_error(message, field)
    return typer.Exit(code)


def refuse(message: str, *, field: str | None = None) -> typer.Exit:
    """Bad input: say it, exit 2."""
    return fail(message, field=field, code=BAD_INPUT)


DetailLines = Callable[[list[dict[str, Any]]], Iterable[str]]


def detail_lines(details: list[dict[str, Any]]) -> Iterator[str]:
    """The detail rows of an error, one line each: `  row N: field: reason`, or `  field: message`."""
    for detail in details:
        reason = detail.get("reason", detail.get("message"))
        if reason is None:
            continue
        where = detail.get("field") or detail.get("system") or ""
        row = f"row {detail['row']}: " if detail.get("row") is not None else ""
        yield f"  {row}{where}: {reason}" if where else f"  {row}{reason}"


def report(exc: AppError, details: DetailLines = detail_lines, *, fields: Mapping[str, str] | None = None,
           wording: Callable[[str], str] | None = None) -> typer.Exit:
    """The error and its details on stderr; the Exit with its code. `fields` renames the API's field names to what
    the command calls them (the path parameter `code` is the AGENCY argument of `cloud ...`); `wording` rewrites
    what the message says (the API's advice into the command line's)."""
    field, message = exc.field, exc.message
    if field and fields and field in fields:
        message = message.removeprefix(f"{field}: ")
        field = fields[field]
    say_error(wording(message) if wording else message, field)
    for line in details(list(exc.details or [])):
        say_detail(line)
    return typer.Exit(exit_code(exc))


def problems(exc: ValidationError) -> list[tuple[str, str]]:
    """(field, reason) of each problem; never pydantic's own text, which repeats the input (maybe a secret)."""
    return [(".".join(str(p) for p in problem["loc"]) or "input", problem["msg"].removeprefix("Value error, "))
            for problem in exc.errors()]


def report_invalid(exc: ValidationError, where: Callable[[str], str] | None = None) -> typer.Exit:
    """Every problem of a refused body, `error: <field>: <reason>` (+ where the user wrote it); exit 2."""
    for field, reason in problems(exc):
        say_error(f"{field}: {reason}{where(field) if where else ''}")
    return typer.Exit(BAD_INPUT)


@contextmanager
def reporting(details: DetailLines = detail_lines, *, fields: Mapping[str, str] | None = None,
              wording: Callable[[str], str] | None = None) -> Iterator[None]:
    """Turn an AppError (or a body a schema refused) raised inside into its error lines and exit code."""
    try:
        yield
    except AppError as exc:
        raise report(exc, details, fields=fields, wording=wording) from None
    except ValidationError as exc:
        raise report_invalid(exc) from None


def reports(details: DetailLines = detail_lines, *, fields: Mapping[str, str] | None = None,
            wording: Callable[[str], str] | None = None) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """A command whose AppErrors are reported (`error: field: message`, exit 2 for bad input, 1 otherwise); see
    `report` for `fields` and `wording`."""

    def decorate(command: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(command)
        def run(*args: P.args, **kwargs: P.kwargs) -> R:
            with reporting(details, fields=fields, wording=wording):
                return command(*args, **kwargs)

        return run

    return decorate


def validated(model: type[M], data: Any, *, options: Mapping[str, str] | None = None) -> M:
    """`data` through `model` (the same schema as the API's body); refused: every field named, exit 2. With
    `options` (field -> option), each problem also names the option it came from."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        def where(field: str) -> str:
            option = (options or {}).get(field.split(".")[0])
            return f" ({option})" if option else ""

        raise report_invalid(exc, where) from None


# --- files the user gives ------------------------------------------------------------------------------------

def read_text(path: Path, option: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:
        raise refuse(f"{option}: cannot read {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise refuse(f"{option}: {path} is not UTF-8 text") from None


def read_document(path: Path, option: str) -> Any:
    """A YAML (or JSON) document; a parse error names the option and the line, never the file's content."""
    import yaml

    try:
        return yaml.safe_load(read_text(path, option))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise refuse(f"{option}: {path} is not valid YAML{where}") from None


def mapping(value: Any, option: str, what: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(key, str) for key in value):
        raise refuse(f"{option}: expected {what}, got {type(value).__name__}")
    return value


def body(path: Path, model: type[M], *, option: str = "--file") -> M:
    """A request body from a YAML or JSON file, in the API's shape, through the API's schema (refused: exit 2
    naming each field)."""
    return validated(model, mapping(read_document(path, option), option, "a mapping (the API's request body)"))


# --- output ------------------------------------------------------------------------------------------------

def say(text: str, *, out: Console | None = None) -> None:
    """A line of plain text (never markup, never wrapped)."""
    (out or console).print(escape(text), soft_wrap=True, highlight=False)


class PlainTable(Table):
    """A table whose text cells are data, never console markup (a styled cell is given as a rich Text), and whose
    long texts are never squeezed: when the whole row does not fit the width, the long columns move out into a
    table of their own under it (keyed by the first column), where they take the whole width, folded."""

    def add_row(self, *renderables: Any, **kwargs: Any) -> None:
        super().add_row(*(Text(cell) if isinstance(cell, str) else cell for cell in renderables), **kwargs)

    movable: frozenset[str] = frozenset()  # the long columns (by header)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        long = [column for column in self.columns[1:] if column.header in self.movable]
        if not long or self.__rich_measure__(console, options).maximum <= options.max_width:
            yield from super().__rich_console__(console, options)
            return
        short = [column for column in self.columns if column not in long]
        yield self._part(short, title=self.title)
        key = self.columns[0]
        for column in long:
            yield self._part([key, column], skip_empty=column)

    def _part(self, columns: list[Column], *, title: Any = None, skip_empty: Column | None = None) -> Table:
        part = Table(title=title, box=self.box, show_header=self.show_header)
        for column in columns:
            part.columns.append(replace(column.copy(), _index=len(part.columns)))
        cells = [list(column.cells) for column in columns]
        for index, row in enumerate(self.rows):
            values = [column_cells[index] for column_cells in cells]
            if skip_empty is not None and str(values[-1]).strip() in ("", "–"):
                continue
            part.add_row(*values, style=row.style, end_section=row.end_section)
        return part


def table(*columns: str, title: str | None = None, fold: Iterable[str] = (), wrap: Iterable[str] = (),
          right: Iterable[str] = ()) -> Table:
    """A table whose short columns never wrap and whose long texts (`fold`: messages, explanations) are folded, never
    cut to an ellipsis; when a row does not fit the width, those go under the table (keyed by the first column) with
    the whole width to themselves. `wrap` columns wrap in place. Cells are plain text."""
    long, numeric = set(fold), set(right)
    result = PlainTable(title=escape(title) if title else None)
    result.movable = frozenset(long)
    for name in columns:
        justify: JustifyMethod = "right" if name in numeric else "left"
        if name in long or name in set(wrap):
            result.add_column(name, overflow="fold", justify=justify)
        else:
            result.add_column(name, no_wrap=True, justify=justify)
    return result


def plain_progress() -> bool:
    """Whether progress is written as plain lines (stdout is not a terminal) instead of drawn."""
    return not console.is_terminal


def stamp(clock: Clock, settings: Settings) -> str:
    return clock.now().astimezone(ZoneInfo(settings.timezone)).isoformat(timespec="seconds")


class StateLines:
    """One plain line per change of a thing's state, `<time> <name> <state>`, flushed at once: a watcher's output
    when it is not a terminal (a log, a pipe, CI), where a progress bar would show nothing until the end."""

    def __init__(self, clock: Clock, settings: Settings) -> None:
        self._clock, self._settings = clock, settings
        self._seen: dict[str, str] = {}

    def update(self, name: str, state: str) -> None:
        if self._seen.get(name) == state:
            return
        self._seen[name] = state
        say(f"{stamp(self._clock, self._settings)} {name} {state}")
        console.file.flush()


@contextmanager
def working(message: str) -> Iterator[None]:
    """A spinner on stderr while something runs; not on a terminal, the message once as a plain line."""
    if err.is_terminal:
        with err.status(escape(message)):
            yield
        return
    say(message, out=err)
    yield


def write_out(text: str, output: Path | None = None) -> None:
    """Text to a file, or to stdout as it is (documents: CSV, YAML, inventories)."""
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
