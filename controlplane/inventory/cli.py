"""`controlplane systems|catalogue|adoption|plan`: the system inventory, the component catalogue, open-source
adoption and migration plans on the command line. Acts as the CLI's system actor, like the other commands."""

from __future__ import annotations

import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from sqlalchemy import select

from controlplane.auth.models import Agency
from controlplane.context import AppContext
from controlplane.db import transaction
from controlplane.errors import AppError
from controlplane.migration import catalogue as files
from controlplane.migration import inventory
from controlplane.migration.domain import SystemStatus
from controlplane.migration.inventory_schemas import ExportFormat, ImportMode, ImportReport

systems_app = typer.Typer(help="Agency systems of the migration inventory: import, list, export, sample.",
                          no_args_is_help=True)
catalogue_app = typer.Typer(help="The component catalogue: proprietary components and their open-source targets.",
                            no_args_is_help=True)
console = Console()
err = Console(stderr=True)


def _context() -> AppContext:
    # The root CLI's context and actor (imported here: the root CLI imports this module).
    from controlplane.cli import _cloud_context

    return _cloud_context()


def _actor() -> str:
    from controlplane.cli import _actor as cli_actor

    return cli_actor()


def _wide() -> Console:
    return Console(width=None if sys.stdout.isatty() else 220)


def _fail(exc: AppError) -> typer.Exit:
    """The error and every detail row on stderr; exit 2 for bad input (4xx), 1 otherwise."""
    err.print(f"[red]error:[/] {escape(f'{exc.field}: {exc.message}' if exc.field else exc.message)}", soft_wrap=True)
    for detail in exc.details or []:
        if "reason" in detail:  # a row problem of an import
            where = " ".join(str(detail[k]) for k in ("row", "system", "field") if detail.get(k) is not None)
            err.print(escape(f"  {'row ' if detail.get('row') is not None else ''}{where}: {detail['reason']}"),
                      soft_wrap=True)
    missing = sorted({d["agency"] for d in exc.details or [] if d.get("code") == "unknown_agency"})
    if missing:
        err.print(escape(f"agencies not in the database: {', '.join(missing)}; `controlplane seed` loads the "
                         "agency catalogue"), soft_wrap=True)
    return typer.Exit(2 if exc.status_code < 500 else 1)


def _import(filename: str, content: bytes, mode: ImportMode, dry_run: bool) -> ImportReport:
    ctx = _context()
    try:
        with transaction(ctx.sessions) as session:
            return inventory.import_systems(session, clock=ctx.clock, actor=_actor(), filename=filename,
                                            content=content, mode=mode, dry_run=dry_run)
    except AppError as exc:
        raise _fail(exc) from None
    finally:
        ctx.engine.dispose()


def _print_report(report: ImportReport) -> None:
    c = report.counts
    verb = "would import" if report.dry_run else "imported"
    console.print(escape(f"{verb} {report.systems} systems from {report.source} ({report.mode.value}): "
                         f"{c.created} created, {c.updated} updated, {c.unchanged} unchanged, {c.deleted} deleted"),
                  soft_wrap=True, highlight=False)
    for label, codes in (("created", report.created), ("updated", report.updated), ("deleted", report.deleted)):
        if codes and (report.dry_run or label == "deleted"):
            console.print(escape(f"  {label}: {', '.join(codes)}"), soft_wrap=True, highlight=False)
    if report.findings:
        console.print(f"flagged ({len(report.findings)}): components the catalogue {report.catalogue_version} does "
                      "not know; such a system cannot be planned", soft_wrap=True, highlight=False)
        for f in report.findings:
            console.print(escape(f"  ! {f.system} {f.field}: {f.message}"), soft_wrap=True, highlight=False)


@systems_app.command("import")
def systems_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="a .csv, .yaml or .yml file"),
    mode: ImportMode = typer.Option(ImportMode.MERGE, help="merge (create and update) or replace (also delete the "
                                                           "systems the file leaves out)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check and report what would change; write nothing"),
) -> None:
    """Import systems, all or nothing: every bad row is listed with its number (exit 2)."""
    _print_report(_import(file.name, file.read_bytes(), mode, dry_run))


@systems_app.command("sample")
def systems_sample() -> None:
    """Load the shipped sample inventory (51 systems of seven agencies the seed creates; merge)."""
    path = files.SAMPLE_INVENTORY_FILE
    needed = {system.agency for system in files.load_sample_inventory()}
    ctx = _context()
    try:
        with transaction(ctx.sessions) as session:
            missing = sorted(needed - set(session.scalars(select(Agency.code).where(Agency.code.in_(needed)))))
    finally:
        ctx.engine.dispose()
    if missing:
        message = (f"the sample needs the agencies {', '.join(missing)}, which are not in the database: "
                   "`controlplane seed` loads the agency catalogue")
        err.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)
        raise typer.Exit(2)
    _print_report(_import(path.name, path.read_bytes(), ImportMode.MERGE, False))


@systems_app.command("list")
def systems_list(
    agency: str | None = typer.Option(None, help="agency code"),
    status: SystemStatus | None = typer.Option(None, help="legacy or migrated"),
) -> None:
    """The systems, by agency and code, with their unknown components."""
    ctx = _context()
    try:
        with transaction(ctx.sessions) as session:
            rows = [inventory.system_read(r)
                    for r in inventory.list_systems(session, viewer=_actor(), agency=agency, status=status)]
    except AppError as exc:
        raise _fail(exc) from None
    finally:
        ctx.engine.dispose()
    table = Table("code", "agency", "name", "criticality", "status", "components", "unknown",
                  title=f"Systems ({len(rows)})")
    for row in rows:
        table.add_row(row.code, row.agency, escape(row.name_ko or row.name_en), row.criticality.value,
                      row.status.value, escape(", ".join(f"{c.product} {c.version}" for c in row.components)),
                      str(row.unknown_components) if row.unknown_components else "–")
    _wide().print(table)


@systems_app.command("export")
def systems_export(
    format: ExportFormat = typer.Option(ExportFormat.CSV, "--format", help="csv or yaml"),
    agency: str | None = typer.Option(None, help="agency code: only its systems"),
    output: Path | None = typer.Option(None, "--output", "-o", help="file to write (default: stdout)"),
) -> None:
    """The systems as CSV or YAML that `systems import` reads back to the same systems."""
    ctx = _context()
    try:
        with transaction(ctx.sessions) as session:
            text = inventory.export_systems(session, viewer=_actor(), fmt=format, agency=agency)
    except AppError as exc:
        raise _fail(exc) from None
    finally:
        ctx.engine.dispose()
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")


@catalogue_app.command("show")
def catalogue_show() -> None:
    """Every entry: the components it matches, its open-source target, role and grade."""
    catalogue = inventory.catalogue_read()
    table = Table("id", "kind", "matches", "versions", "target", "role", "grade", "open source",
                  title=f"Component catalogue {catalogue.version} ({len(catalogue.entries)} entries)")
    for e in catalogue.entries:
        versions = f"{e.versions.min or ''}–{e.versions.max or ''}" if e.versions.min or e.versions.max else "any"
        table.add_row(e.id, e.kind.value, escape(f"{e.vendors[0]} {' / '.join(e.products)}"), versions,
                      escape(f"{e.target.product} {e.target.version}"), e.role, e.grade.value,
                      "yes" if e.open_source else "no")
    _wide().print(table)


def adoption() -> None:
    """Open-source share of the systems' components per agency, now and after their legacy systems migrate."""
    ctx = _context()
    try:
        with transaction(ctx.sessions) as session:
            report = inventory.adoption_report(session, viewer=_actor())
    finally:
        ctx.engine.dispose()
    table = Table("agency", "components", "open now", "open after", "unknown", "share now", "share after",
                  title=f"Open-source adoption (catalogue {report.catalogue_version})")
    for row in [*report.agencies, report.total]:
        table.add_row(row.agency, str(row.components), str(row.open_now), str(row.open_after), str(row.unknown),
                      f"{row.share_now:.1%}", f"{row.share_after:.1%}")
    _wide().print(table)


def plan(
    system: list[str] = typer.Option([], "--system", help="a system to plan (repeat); waves follow dependencies"),
    wave: list[str] = typer.Option([], "--wave", help="a wave's systems, 'a,b' (repeat, wave 1 first)"),
) -> None:
    """The migration plan, like `terraform plan`: exit 0 when it can be applied, 1 with findings, 2 for bad input.

    Quota use and free capacity are read from the cloud first when one is configured (else the agencies' specs)."""
    from controlplane.cloud.flows import refresh_cloud

    waves = [[code.strip() for code in group.split(",") if code.strip()] for group in wave]
    if any(not group for group in waves):
        err.print("[red]error:[/] --wave: a wave lists system codes separated by ','")
        raise typer.Exit(2)
    ctx = _context()
    try:
        if not refresh_cloud(ctx):
            unread = f"cloud '{ctx.cloud.cloud_name}' not read" if ctx.cloud.cloud_name else "no cloud configured"
            err.print(escape(f"note: {unread}; quotas are the agencies' specs, the free capacity is unknown"),
                      soft_wrap=True)
        with transaction(ctx.sessions) as session:
            result = inventory.plan_systems(session, viewer=_actor(), cloud=ctx.cloud.cloud_name,
                                            cached=ctx.metrics.cloud.snapshot, codes=system or None,
                                            waves=waves or None)
    except AppError as exc:
        raise _fail(exc) from None
    finally:
        ctx.cloud.close()
        ctx.engine.dispose()
    sys.stdout.write(result.text + "\n")
    raise typer.Exit(0 if result.ok else 1)
