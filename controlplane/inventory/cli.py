"""`controlplane systems|catalogue|adoption|plan`: the system inventory, the component catalogue, open-source
adoption and migration plans on the command line. Acts as the CLI's system actor, like the other commands."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import typer
from sqlalchemy import select

from controlplane import clikit
from controlplane.auth.models import Agency
from controlplane.cloud.metrics import CloudCollector
from controlplane.db import transaction
from controlplane.inventory import files
from controlplane.inventory import service as inventory
from controlplane.inventory.domain import SystemStatus
from controlplane.inventory.schemas import ExportFormat, ImportMode, ImportReport

systems_app = typer.Typer(help="Agency systems of the migration inventory: import, list, export, sample.",
                          no_args_is_help=True)
catalogue_app = typer.Typer(help="The component catalogue: proprietary components and their open-source targets.",
                            no_args_is_help=True)
commands_app = typer.Typer()  # adoption and plan: commands of the root
console = clikit.console


def _import_details(details: list[dict[str, Any]]) -> Iterator[str]:
    """Every row problem of an import (`row 3 sys-1 criticality: reason`), then the agencies it needs."""
    for detail in details:
        if "reason" in detail:  # a row problem of an import
            where = " ".join(str(detail[k]) for k in ("row", "system", "field") if detail.get(k) is not None)
            yield f"  {'row ' if detail.get('row') is not None else ''}{where}: {detail['reason']}"
    missing = sorted({d["agency"] for d in details if d.get("code") == "unknown_agency"})
    if missing:
        yield (f"agencies not in the database: {', '.join(missing)}; `controlplane seed` loads the agency "
               "catalogue")


def _import(filename: str, content: bytes, mode: ImportMode, dry_run: bool) -> ImportReport:
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        return inventory.import_systems(session, clock=ctx.clock, actor=clikit.actor(), filename=filename,
                                        content=content, mode=mode, dry_run=dry_run)


def _print_report(report: ImportReport) -> None:
    c = report.counts
    verb = "would import" if report.dry_run else "imported"
    clikit.say(f"{verb} {report.systems} systems from {report.source} ({report.mode.value}): {c.created} created, "
               f"{c.updated} updated, {c.unchanged} unchanged, {c.deleted} deleted")
    for label, codes in (("created", report.created), ("updated", report.updated), ("deleted", report.deleted)):
        if codes and (report.dry_run or label == "deleted"):
            clikit.say(f"  {label}: {', '.join(codes)}")
    if report.findings:
        clikit.say(f"flagged ({len(report.findings)}): components the catalogue {report.catalogue_version} does "
                   "not know; such a system cannot be planned")
        for f in report.findings:
            clikit.say(f"  ! {f.system} {f.field}: {f.message}")


@systems_app.command("import")
@clikit.reports(details=_import_details)
def systems_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True, help="a .csv, .yaml or .yml file"),
    mode: ImportMode = typer.Option(ImportMode.MERGE, help="merge (create and update) or replace (also delete the "
                                                           "systems the file leaves out)"),
    dry_run: bool = typer.Option(False, "--dry-run", help="check and report what would change; write nothing"),
) -> None:
    """Import systems, all or nothing: every bad row is listed with its number (exit 2)."""
    _print_report(_import(file.name, file.read_bytes(), mode, dry_run))


@systems_app.command("sample")
@clikit.reports(details=_import_details)
def systems_sample() -> None:
    """Load the shipped sample inventory (51 systems of seven agencies the seed creates; merge)."""
    path = files.SAMPLE_INVENTORY_FILE
    needed = {system.agency for system in files.load_sample_inventory()}
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        missing = sorted(needed - set(session.scalars(select(Agency.code).where(Agency.code.in_(needed)))))
    if missing:
        raise clikit.refuse(f"the sample needs the agencies {', '.join(missing)}, which are not in the database: "
                            "`controlplane seed` loads the agency catalogue")
    _print_report(_import(path.name, path.read_bytes(), ImportMode.MERGE, False))


@systems_app.command("list")
@clikit.reports()
def systems_list(
    agency: str | None = typer.Option(None, help="agency code"),
    status: SystemStatus | None = typer.Option(None, help="legacy or migrated"),
) -> None:
    """The systems, by agency and code, with their unknown components."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        rows = [inventory.system_read(r)
                for r in inventory.list_systems(session, viewer=clikit.actor(), agency=agency, status=status)]
    table = clikit.table("code", "agency", "name", "criticality", "status", "components", "unknown",
                         title=f"Systems ({len(rows)})", wrap=("name",), fold=("components",))
    for row in rows:
        table.add_row(row.code, row.agency, row.name_ko or row.name_en, row.criticality.value, row.status.value,
                      ", ".join(f"{c.product} {c.version}" for c in row.components),
                      str(row.unknown_components) if row.unknown_components else "–")
    console.print(table)


@systems_app.command("export")
@clikit.reports()
def systems_export(
    format: ExportFormat = typer.Option(ExportFormat.CSV, "--format", help="csv or yaml"),
    agency: str | None = typer.Option(None, help="agency code: only its systems"),
    output: Path | None = typer.Option(None, "--output", "-o", help="file to write (default: stdout)"),
) -> None:
    """The systems as CSV or YAML that `systems import` reads back to the same systems."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        text = inventory.export_systems(session, viewer=clikit.actor(), fmt=format, agency=agency)
    clikit.write_out(text, output)


@catalogue_app.command("show")
def catalogue_show() -> None:
    """Every entry: the components it matches, its open-source target, role and grade."""
    catalogue = inventory.catalogue_read()
    table = clikit.table("id", "kind", "matches", "versions", "target", "role", "grade", "open source",
                         title=f"Component catalogue {catalogue.version} ({len(catalogue.entries)} entries)",
                         wrap=("matches", "target"))
    for e in catalogue.entries:
        versions = f"{e.versions.min or ''}–{e.versions.max or ''}" if e.versions.min or e.versions.max else "any"
        table.add_row(e.id, e.kind.value, f"{e.vendors[0]} {' / '.join(e.products)}", versions,
                      f"{e.target.product} {e.target.version}", e.role, e.grade.value,
                      "yes" if e.open_source else "no")
    console.print(table)


@commands_app.command("adoption")
@clikit.reports()
def adoption() -> None:
    """Open-source share of the systems' components per agency, now and after their legacy systems migrate."""
    with clikit.context() as ctx, transaction(ctx.sessions) as session:
        report = inventory.adoption_report(session, viewer=clikit.actor())
    numbers = ("components", "open now", "open after", "unknown", "share now", "share after")
    table = clikit.table("agency", *numbers, title=f"Open-source adoption (catalogue {report.catalogue_version})",
                         right=numbers)
    for row in [*report.agencies, report.total]:
        table.add_row(row.agency, str(row.components), str(row.open_now), str(row.open_after), str(row.unknown),
                      f"{row.share_now:.1%}", f"{row.share_after:.1%}")
    console.print(table)


@commands_app.command("plan")
@clikit.reports(details=_import_details)
def plan(
    system: list[str] = typer.Option([], "--system", help="a system to plan (repeat); waves follow dependencies"),
    wave: list[str] = typer.Option([], "--wave", help="a wave's systems, 'a,b' (repeat, wave 1 first)"),
) -> None:
    """The migration plan, like `terraform plan`: exit 0 when it can be applied, 1 with findings, 2 for bad input.

    Quota use and free capacity are read from the cloud first when one is configured (else the agencies' specs)."""
    from controlplane.cloud.flows import refresh_cloud

    waves = [[code.strip() for code in group.split(",") if code.strip()] for group in wave]
    if any(not group for group in waves):
        raise clikit.refuse("a wave lists system codes separated by ','", field="--wave")
    with clikit.context() as ctx:
        if not refresh_cloud(ctx):
            unread = f"cloud '{ctx.cloud.cloud_name}' not read" if ctx.cloud.cloud_name else "no cloud configured"
            clikit.say(f"note: {unread}; quotas are the agencies' specs, the free capacity is unknown",
                       out=clikit.err)
        with transaction(ctx.sessions) as session:
            result = inventory.plan_systems(session, viewer=clikit.actor(), cloud=ctx.cloud.cloud_name,
                                            cached=ctx.metrics.of(CloudCollector).snapshot, codes=system or None,
                                            waves=waves or None, image=ctx.settings.migration_image)
    clikit.write_out(result.text + "\n")
    raise typer.Exit(clikit.OK if result.ok else clikit.FAILED)
