"""`rectify calendar load|show|seed`: the operator's hands on the working-day calendar.

A file is validated before anything connects to the database; a load replaces the year in one
transaction, so a bad file or a failed load leaves the calendar as it was.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import asyncpg
from temporalio.service import RPCError, RPCStatusCode

from activities.calendar import (
    PACKAGE_LOADER,
    WEEKDAYS,
    CalendarError,
    CalendarRepository,
    LoadedYear,
    YearArrangement,
    load_arrangement_file,
    seed_calendar,
)
from activities.operator import OPEN_PROVISIONAL_WORKFLOWS
from domain.commands import CalendarUpdated
from wiring.keys import load_keyring
from wiring.settings import Settings
from wiring.temporal import connect_temporal
from workflows.case import CaseWorkflow

OPEN_PROVISIONAL_CASES = (
    "SELECT count(*) FROM cases WHERE deadline_provisional AND closed_at IS NULL"
)


async def notify_cases(dsn: str, settings: Settings, year: int) -> tuple[int, list[str]]:
    """Signal every open case with a provisional deadline to recompute it now.

    Returns how many were told and the failures (a case that closed meanwhile is not one).
    """
    conn = await asyncpg.connect(dsn)
    try:
        workflow_ids = [row["workflow_id"] for row in await conn.fetch(OPEN_PROVISIONAL_WORKFLOWS)]
    finally:
        await conn.close()
    if not workflow_ids:
        return 0, []
    client = await connect_temporal(
        settings.require_temporal_address(),
        settings.temporal_namespace,
        keyring=load_keyring(settings),
    )
    told, failures = 0, []
    for workflow_id in workflow_ids:
        handle = client.get_workflow_handle_for(CaseWorkflow.run, workflow_id)
        try:
            await handle.signal(CaseWorkflow.calendar_updated, CalendarUpdated(year=year))
            told += 1
        except RPCError as exc:
            if exc.status != RPCStatusCode.NOT_FOUND:
                failures.append(f"{workflow_id}: {exc}")
    return told, failures


@dataclass(frozen=True)
class LoadReport:
    arrangement: YearArrangement
    revision: int
    open_provisional_cases: int


@dataclass(frozen=True)
class YearReport:
    loaded: LoadedYear
    arrangement: YearArrangement


def year_ranges(years: list[int]) -> str:
    """`[2004, 2005, 2006, 2010]` → `2004-2006, 2010`."""
    parts: list[str] = []
    for year in sorted(years):
        if parts and parts[-1].split("-")[-1] == str(year - 1):
            parts[-1] = f"{parts[-1].split('-')[0]}-{year}"
        else:
            parts.append(str(year))
    return ", ".join(parts)


async def load_calendar(dsn: str, arrangement: YearArrangement, loaded_by: str) -> LoadReport:
    conn = await asyncpg.connect(dsn)
    try:
        revision = await CalendarRepository(conn).replace_year(arrangement, loaded_by)
        waiting = await conn.fetchval(OPEN_PROVISIONAL_CASES)
    finally:
        await conn.close()
    return LoadReport(arrangement, revision, int(waiting))


async def show_calendar(dsn: str, year: int) -> YearReport | None:
    conn = await asyncpg.connect(dsn)
    try:
        repo = CalendarRepository(conn)
        loaded = await repo.loaded_year(year)
        arrangement = await repo.arrangement(year)
    finally:
        await conn.close()
    if loaded is None or arrangement is None:
        return None
    return YearReport(loaded, arrangement)


def format_load(report: LoadReport, path: Path, loaded_by: str) -> str:
    arr = report.arrangement
    days_off = sum(len(h.days()) for h in arr.holidays)
    return "\n".join(
        [
            f"calendar {arr.year} loaded from {path.name} by {loaded_by}: "
            f"revision {report.revision}",
            f"  source: {arr.source}",
            f"  holidays: {len(arr.holidays)} ({days_off} days off), "
            f"make-up working days: {len(arr.makeup_workdays)}",
            f"open cases with a provisional deadline: {report.open_provisional_cases} "
            "(their workflows recompute them)",
        ]
    )


def format_year(report: YearReport) -> str:
    loaded, arr = report.loaded, report.arrangement
    lines = [
        f"calendar {loaded.year}: revision {loaded.revision}, loaded by {loaded.loaded_by} "
        f"at {loaded.loaded_at:%Y-%m-%d %H:%M %Z}",
        f"  source: {loaded.source}",
        f"  holidays ({len(arr.holidays)}):",
    ]
    for h in arr.holidays:
        n = len(h.days())
        lines.append(f"    {h.first} to {h.last}  {h.name} ({n} day{'s' if n > 1 else ''})")
    lines.append(f"  make-up working days ({len(arr.makeup_workdays)}):")
    for m in arr.makeup_workdays:
        lines.append(f"    {m.day} {WEEKDAYS[m.day.weekday()]}  for {m.for_holiday}")
    return "\n".join(lines)


def format_seeded(seeded: list[int]) -> str:
    if not seeded:
        return "calendar: every year chinese-calendar knows is already loaded (nothing seeded)"
    return f"calendar years seeded from chinese-calendar: {year_ranges(seeded)}"


def add_calendar_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    calendar = commands.add_parser(
        "calendar",
        help="the working-day calendar: load a year's official arrangement, show, seed",
        description="China's official working-day calendar (holidays and make-up working days).",
    )
    actions = calendar.add_subparsers(dest="calendar_command", required=True, metavar="ACTION")
    load = actions.add_parser(
        "load",
        help="validate an arrangement file (YAML or JSON) and replace that year",
        description="See ops/examples/calendar-2027.yaml for the format.",
    )
    load.add_argument("file", type=Path, help="the arrangement file")
    load.add_argument("--by", dest="loaded_by", help="who loads it (default: your login)")
    show = actions.add_parser("show", help="print a year's holidays and make-up working days")
    show.add_argument("year", help="e.g. 2027")
    actions.add_parser("seed", help="load every year chinese-calendar knows that is missing")


def _operator() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return "operator"


def _parse_year(text: str) -> int | None:
    try:
        year = int(text)
    except ValueError:
        return None
    return year if date.min.year <= year <= date.max.year else None


def run_calendar_command(args: argparse.Namespace, settings: Settings) -> int:
    """Run `rectify calendar ...`: 0 done, 1 the file or the database refused, 2 bad usage."""
    prefix = f"rectify calendar {args.calendar_command}"
    arrangement: YearArrangement | None = None
    year: int | None = None
    try:
        # Everything the operator typed is checked before the database is touched.
        if args.calendar_command == "load":
            arrangement = load_arrangement_file(args.file)
        elif args.calendar_command == "show":
            year = _parse_year(args.year)
            if year is None:
                print(f"{prefix}: invalid year {args.year!r}: expected e.g. 2027", file=sys.stderr)
                return 2
        dsn = settings.require_database_url()
        if arrangement is not None:
            loaded_by = args.loaded_by or _operator()
            report = asyncio.run(load_calendar(dsn, arrangement, loaded_by))
            print(format_load(report, args.file, loaded_by))
            if report.open_provisional_cases and settings.temporal_address:
                told, failures = asyncio.run(notify_cases(dsn, settings, arrangement.year))
                print(f"told {told} open cases to recompute their provisional deadlines now")
                for failure in failures:
                    print(f"{prefix}: could not tell {failure}", file=sys.stderr)
                if failures:
                    return 1
            elif report.open_provisional_cases:
                print(
                    "TEMPORAL_ADDRESS is not set: those cases recompute within a week by themselves"
                )
        elif year is not None:
            shown = asyncio.run(show_calendar(dsn, year))
            if shown is None:
                print(f"no data for {year}: deadlines in it are provisional")
            else:
                print(format_year(shown))
        else:
            print(format_seeded(asyncio.run(seed_calendar(dsn, PACKAGE_LOADER))))
    except OSError as exc:
        print(f"{prefix}: cannot reach DATABASE_URL: {exc}", file=sys.stderr)
        return 1
    except (CalendarError, RuntimeError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        print(f"{prefix}: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0
