"""`controlplane compliance ...`: the remote-meeting register on the command line: the share report, session
imports, and the sessions, designated meetings and policies one at a time (as the CLI's system actor, audited)."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from controlplane import clikit
from controlplane.compliance import service as compliance_service
from controlplane.compliance import tabular
from controlplane.compliance.domain import Mode, PeriodError, SessionStatus, parse_period
from controlplane.compliance.schemas import (
    MeetingCreate,
    MeetingRead,
    MeetingUpdate,
    PolicyCreate,
    PolicyRead,
    SessionCreate,
    SessionRead,
    SessionUpdate,
)
from controlplane.db import transaction
from controlplane.inputs import Input, IsoDate

compliance_app = typer.Typer(help="Remote-meeting compliance register.", no_args_is_help=True)
sessions_app = typer.Typer(help="Sessions of designated meetings, one at a time (`import` takes a file).",
                           no_args_is_help=True)
meetings_app = typer.Typer(help="Designated inter-agency meetings.", no_args_is_help=True)
policies_app = typer.Typer(help="The video-share policies (target and number of designated meetings).",
                           no_args_is_help=True)
compliance_app.add_typer(sessions_app, name="sessions")
compliance_app.add_typer(meetings_app, name="meetings")
compliance_app.add_typer(policies_app, name="policies")

_SESSION_OPTIONS = {"meeting": "--meeting", "held_on": "--held-on", "mode": "--mode", "status": "--status",
                    "note": "--note"}
_POLICY_OPTIONS = {"effective_from": "--from", "effective_until": "--until", "designated_meetings": "--meetings",
                   "target_percent": "--target-percent", "hybrid_counts_as_video": "--hybrid-counts-as-video",
                   "note": "--note"}


class ReportFormat(StrEnum):
    TABLE = "table"
    CSV = "csv"
    XLSX = "xlsx"


@compliance_app.command("report")
@clikit.reports()
def compliance_report(
    period: str = typer.Option(..., help="YYYY, YYYY-Qn or YYYY-MM"),
    ministry: str | None = typer.Option(None, help="host ministry code: that ministry's meetings"),
    format: ReportFormat = typer.Option(ReportFormat.TABLE, "--format", help="table, csv or xlsx"),
    output: Path | None = typer.Option(None, help="file to write (default: stdout; required for xlsx on a tty)"),
) -> None:
    """Video share against the target for a period, per ministry (or per meeting of one ministry)."""
    try:
        parsed = parse_period(period)
    except PeriodError as exc:
        raise clikit.refuse(str(exc), field="period") from None
    if format == ReportFormat.XLSX and output is None and sys.stdout.isatty():
        raise clikit.refuse("xlsx is binary: give --output FILE or redirect stdout", field="format")
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        report = compliance_service.share_report(session, period=parsed, ministry=ministry)

    if format == ReportFormat.XLSX:
        content = tabular.report_xlsx(report)
        if output:
            output.write_bytes(content)
        else:
            sys.stdout.buffer.write(content)
        return
    if format == ReportFormat.CSV:
        clikit.write_out(tabular.report_csv(report), output)
        return

    table = clikit.table("scope", "code", "name", "held", "video", "share", "target", "forecast", "status",
                         title=f"Video share {report.period} ({report.start} – {report.end})", wrap=("name",),
                         right=("held", "video", "share", "target"))
    for row in tabular.report_rows(report):
        values = dict(zip(tabular.REPORT_COLUMNS, row, strict=True))
        table.add_row(
            str(values["scope"]), str(values["key"]), str(values["name_ko"]), str(values["held"]),
            str(values["video"]), _percent(values["share"]), _percent(values["target"]), str(values["forecast"]),
            str(values["status"]),
        )
    if output is None:
        clikit.console.print(table)
        return
    with output.open("w", encoding="utf-8") as handle:
        Console(file=handle, width=160).print(table)


def _percent(value: object) -> str:
    return f"{float(value):.1%}" if isinstance(value, float | int) else "–"


@compliance_app.command("import")
@clikit.reports()
def compliance_import(file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True)) -> None:
    """Import sessions from a CSV or XLSX file, all or nothing: every bad row is listed with its number (exit 2)."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        imported = compliance_service.import_sessions(
            session, clock=ctx.clock, actor=clikit.actor(), rows=tabular.read_rows(file.name, file.read_bytes()),
            source=file.name,
        )
    clikit.say(f"imported {imported} sessions from {file.name}")


# --- sessions one at a time ------------------------------------------------------------------------------

def _session_line(verb: str, row: SessionRead) -> str:
    return (f"{verb} session {row.id}: {row.meeting} on {row.held_on} ({row.mode.value}, {row.status.value})"
            + (f" – {row.note}" if row.note else ""))


@sessions_app.command("add")
@clikit.reports()
def sessions_add(
    meeting: str = typer.Option(..., help="the designated meeting's code"),
    held_on: str = typer.Option(..., help="YYYY-MM-DD"),
    mode: Mode = typer.Option(..., help="video, in_person or hybrid"),
    status: SessionStatus = typer.Option(SessionStatus.HELD, help="held, scheduled or cancelled"),
    note: str = typer.Option("", help="a note"),
) -> None:
    """Record one session of a designated meeting (audited)."""
    data = clikit.validated(SessionCreate, {"meeting": meeting, "held_on": held_on, "mode": mode, "status": status,
                                            "note": note}, options=_SESSION_OPTIONS)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        row = compliance_service.session_read(
            compliance_service.create_session(session, clock=ctx.clock, actor=clikit.actor(), data=data))
    clikit.say(_session_line("recorded", row))


@sessions_app.command("update")
@clikit.reports()
def sessions_update(
    session_id: int = typer.Argument(..., help="the session's id"),
    held_on: str | None = typer.Option(None, help="YYYY-MM-DD"),
    mode: Mode | None = typer.Option(None, help="video, in_person or hybrid"),
    status: SessionStatus | None = typer.Option(None, help="held, scheduled or cancelled"),
    note: str | None = typer.Option(None, help="a note"),
) -> None:
    """Correct a session (audited)."""
    changes: dict[str, Any] = {name: value for name, value in (
        ("held_on", held_on), ("mode", mode), ("status", status), ("note", note)) if value is not None}
    if not changes:
        raise clikit.refuse("nothing to change: give --held-on, --mode, --status or --note")
    data = clikit.validated(SessionUpdate, changes, options=_SESSION_OPTIONS)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        row = compliance_service.session_read(compliance_service.update_session(
            session, clock=ctx.clock, actor=clikit.actor(), session_id=session_id, data=data))
    clikit.say(_session_line("updated", row))


@sessions_app.command("delete")
@clikit.reports()
def sessions_delete(session_id: int = typer.Argument(..., help="the session's id")) -> None:
    """Delete a session recorded by mistake (audited)."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        compliance_service.delete_session(session, clock=ctx.clock, actor=clikit.actor(), session_id=session_id)
    clikit.say(f"deleted session {session_id}")


# --- designated meetings and policies -----------------------------------------------------------------------

def _meeting_line(verb: str, meeting: MeetingRead) -> str:
    until = f" until {meeting.designated_until}" if meeting.designated_until else ""
    return (f"{verb} meeting {meeting.code} ({meeting.name_en}), hosted by {meeting.host}, {meeting.cadence.value}, "
            f"designated from {meeting.designated_from}{until}{'' if meeting.active else ', inactive'}; "
            f"participants: {', '.join(meeting.participants) or '–'}")


_MEETING_FILE = typer.Option(..., "--file", exists=True, dir_okay=False, readable=True,
                             help="YAML or JSON: the body of the API's request")


@meetings_app.command("create")
@clikit.reports(fields={"code": "meeting"})
def meetings_create(file: Path = _MEETING_FILE) -> None:
    """Designate a meeting from a file: code, name_ko, name_en, host, participants, cadence, designated_from,
    designated_until, active (as POST /api/v1/compliance/meetings)."""
    data = clikit.body(file, MeetingCreate)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        meeting = compliance_service.meeting_read(
            compliance_service.create_meeting(session, clock=ctx.clock, actor=clikit.actor(), data=data))
    clikit.say(_meeting_line("created", meeting))


@meetings_app.command("update")
@clikit.reports(fields={"code": "meeting"})
def meetings_update(code: str = typer.Argument(..., help="the meeting's code"), file: Path = _MEETING_FILE) -> None:
    """Change a designated meeting from a file holding the fields to change (as PATCH
    /api/v1/compliance/meetings/{code})."""
    data = clikit.body(file, MeetingUpdate)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        meeting = compliance_service.meeting_read(compliance_service.update_meeting(
            session, clock=ctx.clock, actor=clikit.actor(), code=code, data=data))
    clikit.say(_meeting_line("updated", meeting))


class _PolicyEnd(Input):
    """The body of PATCH /api/v1/compliance/policies/{id}."""

    effective_until: IsoDate


def _policy_line(verb: str, policy: PolicyRead) -> str:
    return (f"{verb} policy {policy.id}: {policy.target_percent}% of {policy.designated_meetings} designated "
            f"meetings by video from {policy.effective_from} until {policy.effective_until or 'further notice'}"
            + (", hybrid counts as video" if policy.hybrid_counts_as_video else ""))


@policies_app.command("add")
@clikit.reports()
def policies_add(
    effective_from: str = typer.Option(..., "--from", help="YYYY-MM-DD"),
    effective_until: str | None = typer.Option(None, "--until", help="YYYY-MM-DD (default: until further notice)"),
    designated_meetings: int = typer.Option(..., "--meetings", help="how many meetings are designated"),
    target_percent: int = typer.Option(..., "--target-percent", help="the video share to reach, 0-100"),
    hybrid_counts_as_video: bool = typer.Option(False, "--hybrid-counts-as-video"),
    note: str = typer.Option("", help="a note"),
) -> None:
    """Add a policy; it must not overlap one in force (end that one first)."""
    data = clikit.validated(PolicyCreate, {
        "effective_from": effective_from, "effective_until": effective_until,
        "designated_meetings": designated_meetings, "target_percent": target_percent,
        "hybrid_counts_as_video": hybrid_counts_as_video, "note": note}, options=_POLICY_OPTIONS)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        policy = compliance_service.policy_read(
            compliance_service.create_policy(session, clock=ctx.clock, actor=clikit.actor(), data=data))
    clikit.say(_policy_line("added", policy))


@policies_app.command("end")
@clikit.reports()
def policies_end(
    policy_id: int = typer.Argument(..., help="the policy's id"),
    until: str = typer.Option(..., "--until", help="its last day, YYYY-MM-DD"),
) -> None:
    """End a policy on a given day."""
    data = clikit.validated(_PolicyEnd, {"effective_until": until}, options=_POLICY_OPTIONS)
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        policy = compliance_service.policy_read(compliance_service.end_policy(
            session, clock=ctx.clock, actor=clikit.actor(), policy_id=policy_id, until=data.effective_until))
    clikit.say(_policy_line("ended", policy))
