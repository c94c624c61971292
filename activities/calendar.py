"""China's official working-day calendar: arrangement files, the calendar tables, day counting.

The State Council publishes each year's arrangement (statutory holidays and the make-up working
weekends, 调休) late in the year before. `chinese-calendar` seeds the years it knows; an operator
loads later years from a file. A year with no data is counted Monday to Friday and every deadline
that touches it is provisional. The counting functions are pure: they read a `WorkingDayCalendar`
snapshot, so the rule is testable without a database.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias
from zoneinfo import ZoneInfo

import asyncpg
import chinese_calendar  # type: ignore[import-untyped]
import structlog
import yaml
from pydantic import ValidationError

from domain.calendar_models import (
    WEEKDAYS as WEEKDAYS,
)
from domain.calendar_models import (
    HolidayRange,
    MakeupWorkday,
)
from domain.calendar_models import (
    YearArrangement as YearArrangement,
)
from domain.models import Deadline
from wiring.yaml_files import ReportingLoader

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

log = structlog.get_logger(__name__)

LOCAL_TZ = ZoneInfo("Asia/Shanghai")
PACKAGE_LOADER = "chinese-calendar"
DayKind = Literal["workday", "rest_day", "holiday", "makeup_workday"]


class CalendarError(Exception):
    """Calendar data that cannot be used; the message says what to fix."""


class CalendarFileError(CalendarError):
    """An arrangement file that cannot be loaded; the message names the file and the field."""


class CalendarSpanError(CalendarError):
    """A count needed a day outside the snapshot it was given: load a longer span."""

    def __init__(self, day: date) -> None:
        super().__init__(f"the calendar snapshot does not cover {day.isoformat()}")
        self.day = day


# --- the arrangement file -------------------------------------------------------------------


class _PlainYamlLoader(ReportingLoader):
    """YAML without implicit timestamps: dates stay text, so pydantic names a bad one's field."""


_PlainYamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _error_line(error: Mapping[str, Any]) -> str:
    path = ""
    for part in error["loc"]:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    if error["type"] == "value_error":
        message = str(error["ctx"]["error"])
    elif error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "missing"
    else:
        message = f"{error['msg']} (got {error['input']!r})"
    return f"{path}: {message}" if path else message


def parse_arrangement(data: object, origin: str) -> YearArrangement:
    """Validate parsed file content; errors name `origin` and every bad field."""
    if not isinstance(data, dict):
        raise CalendarFileError(
            f"{origin}: expected a mapping with keys year, source, holidays, makeup_workdays"
        )
    try:
        return YearArrangement.model_validate(data)
    except ValidationError as exc:
        lines = "; ".join(_error_line(e) for e in exc.errors())
        raise CalendarFileError(f"{origin}: {lines}") from None


def load_arrangement_file(path: Path | str) -> YearArrangement:
    """Read and validate a YAML or JSON arrangement file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CalendarFileError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CalendarFileError(f"{path}: cannot be read: {exc}") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.load(text, _PlainYamlLoader)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        kind = "JSON" if path.suffix == ".json" else "YAML"
        detail = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise CalendarFileError(
            f"{path.name}: not valid {kind}: {' '.join(detail.split())}"
        ) from None
    return parse_arrangement(data, path.name)


# --- days -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalendarDay:
    day: date
    is_working_day: bool
    kind: DayKind
    holiday_name: str | None = None


def weekday_only(day: date) -> CalendarDay:
    """The Monday-to-Friday rule, for a year without official data."""
    if day.weekday() < 5:
        return CalendarDay(day, True, "workday")
    return CalendarDay(day, False, "rest_day")


def arrangement_days(arr: YearArrangement) -> list[CalendarDay]:
    """Every day of the year (365 or 366 rows), classified by the arrangement."""
    holidays = {day: h.name for h in arr.holidays for day in h.days()}
    makeups = {m.day: m.for_holiday for m in arr.makeup_workdays}
    first, rows = date(arr.year, 1, 1), []
    for n in range((date(arr.year + 1, 1, 1) - first).days):
        day = first + timedelta(n)
        if day in holidays:
            rows.append(CalendarDay(day, False, "holiday", holidays[day]))
        elif day in makeups:
            rows.append(CalendarDay(day, True, "makeup_workday", makeups[day]))
        else:
            rows.append(weekday_only(day))
    return rows


def package_years() -> list[int]:
    """The years `chinese-calendar` carries."""
    known: Iterable[date] = chinese_calendar.holidays.keys()
    return list(range(min(known).year, max(known).year + 1))


def arrangement_from_package(year: int) -> YearArrangement:
    """The year's arrangement as `chinese-calendar` records it."""
    years = package_years()
    if year not in years:
        raise CalendarError(
            f"chinese-calendar {chinese_calendar.__version__} has no data for {year} (it covers "
            f"{years[0]}-{years[-1]}): load the official arrangement with "
            "`rectify calendar load FILE`"
        )
    holidays: list[HolidayRange] = []
    makeups: list[MakeupWorkday] = []
    day = date(year, 1, 1)
    while day.year == year:
        is_rest, name = chinese_calendar.get_holiday_detail(day)
        if is_rest and name is not None:
            last = holidays[-1] if holidays else None
            if last is not None and last.name == name and last.last == day - timedelta(1):
                holidays[-1] = last.model_copy(update={"last": day})
            else:
                holidays.append(HolidayRange(name=name, first=day, last=day))
        elif not is_rest and day.weekday() >= 5:
            makeups.append(MakeupWorkday(day=day, for_holiday=name or "unnamed holiday"))
        day += timedelta(1)
    return YearArrangement(
        year=year,
        source=f"chinese-calendar {chinese_calendar.__version__} (State Council arrangement)",
        holidays=holidays,
        makeup_workdays=makeups,
    )


@dataclass(frozen=True)
class WorkingDayCalendar:
    """A snapshot: the official days known between `first` and `last`, and which years are known.

    A day in a known year must be in `days`; a day in any other year follows the weekday rule.
    """

    days: Mapping[date, CalendarDay]
    known_years: frozenset[int]
    first: date = date.min
    last: date = date.max

    @classmethod
    def of(cls, *arrangements: YearArrangement) -> WorkingDayCalendar:
        rows = {d.day: d for arr in arrangements for d in arrangement_days(arr)}
        return cls(rows, frozenset(arr.year for arr in arrangements))

    def is_official(self, day: date) -> bool:
        return day.year in self.known_years

    def day(self, day: date) -> CalendarDay:
        if not self.first <= day <= self.last:
            raise CalendarSpanError(day)
        if not self.is_official(day):
            return weekday_only(day)
        found = self.days.get(day)
        if found is None:
            raise CalendarError(f"the calendar for {day.year} is loaded but has no row for {day}")
        return found


# --- counting -------------------------------------------------------------------------------


def local_day(instant: datetime) -> date:
    """The Asia/Shanghai date of an instant (a naive instant is taken as UTC)."""
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.astimezone(LOCAL_TZ).date()


def end_of_day(day: date) -> datetime:
    """24:00 Asia/Shanghai of `day`, in UTC (16:00 UTC: Shanghai has no daylight saving)."""
    return datetime.combine(day + timedelta(1), time(0), tzinfo=LOCAL_TZ).astimezone(UTC)


@dataclass
class _Count:
    start_day: date
    provisional_years: set[int] = field(default_factory=set)
    skipped: list[CalendarDay] = field(default_factory=list)
    makeups: list[CalendarDay] = field(default_factory=list)

    def look(self, cal: WorkingDayCalendar, day: date) -> CalendarDay:
        if not cal.is_official(day):
            self.provisional_years.add(day.year)
        return cal.day(day)

    def deadline(self, days: int, kind: str, last_day: date, explanation: str) -> Deadline:
        years = sorted(self.provisional_years)
        if years:
            listed = ", ".join(map(str, years))
            explanation += (
                f"; provisional: no official calendar for {listed} (counted Monday to Friday "
                "as working days; recomputed once that year's arrangement is loaded)"
            )
        return Deadline(
            due_at=end_of_day(last_day),
            last_day=last_day.isoformat(),
            days=days,
            kind=kind,
            explanation=explanation,
            start_day=self.start_day.isoformat(),
            provisional=bool(years),
            provisional_years=years,
            skipped_days=[d.day.isoformat() for d in self.skipped],
            makeup_workdays=[d.day.isoformat() for d in self.makeups],
        )


def _label(day: CalendarDay) -> str:
    if day.kind == "holiday":
        return f"{day.holiday_name} holiday"
    if day.kind == "makeup_workday":
        return f"make-up working {WEEKDAYS[day.day.weekday()]} for {day.holiday_name}"
    return "weekend" if day.day.weekday() >= 5 else "rest day"


def describe_days(days: list[CalendarDay]) -> str:
    """Consecutive days with the same label as one range: `2026-10-01 to 2026-10-07 (...)`."""
    groups: list[list[CalendarDay]] = []
    for d in days:
        prev = groups[-1][-1] if groups else None
        if prev and prev.day + timedelta(1) == d.day and _label(prev) == _label(d):
            groups[-1].append(d)
        else:
            groups.append([d])
    parts = []
    for g in groups:
        span = g[0].day.isoformat() + (f" to {g[-1].day}" if len(g) > 1 else "")
        parts.append(f"{span} ({_label(g[0])})")
    return ", ".join(parts)


def working_deadline(start: datetime, days: int, cal: WorkingDayCalendar) -> Deadline:
    """`days` working days counted from the day after `start`'s local date; ends at 24:00."""
    if days < 1:
        raise ValueError("a period counts at least one day")
    count = _Count(local_day(start))
    day, counted = count.start_day, 0
    while counted < days:
        day += timedelta(1)
        info = count.look(cal, day)
        if not info.is_working_day:
            count.skipped.append(info)
            continue
        counted += 1
        if info.kind == "makeup_workday":
            count.makeups.append(info)
    explanation = (
        f"{days} working days counted from the day after {count.start_day} (Asia/Shanghai; "
        "the start day is not counted)"
    )
    if count.skipped:
        explanation += f"; passed over {describe_days(count.skipped)}"
    if count.makeups:
        explanation += f"; counted {describe_days(count.makeups)}"
    explanation += f"; the last day is {day}, ending at 24:00"
    return count.deadline(days, "working", day, explanation)


def calendar_period_deadline(start: datetime, days: int, cal: WorkingDayCalendar) -> Deadline:
    """`days` calendar days from `start`'s local date; an end on a rest day moves to the next
    working day (a make-up working weekend counts as working). Ends at 24:00."""
    if days < 1:
        raise ValueError("a period counts at least one day")
    count = _Count(local_day(start))
    nominal = count.start_day + timedelta(days)
    day = nominal
    info = count.look(cal, day)
    while not info.is_working_day:
        count.skipped.append(info)
        day += timedelta(1)
        info = count.look(cal, day)
    if info.kind == "makeup_workday":
        count.makeups.append(info)
    explanation = (
        f"{days} calendar days counted from the day after {count.start_day} (Asia/Shanghai)"
    )
    if count.skipped:
        explanation += (
            f" end on {nominal}, not a working day; the end moved past "
            f"{describe_days(count.skipped)} to the next working day, {day}, ending at 24:00"
        )
    else:
        explanation += f": the last day is {day}"
        if count.makeups:
            explanation += f", a {_label(info)} (a working day)"
        explanation += ", ending at 24:00"
    return count.deadline(days, "calendar", day, explanation)


# --- the tables -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadedYear:
    year: int
    source: str
    loaded_by: str
    loaded_at: datetime
    revision: int


class CalendarRepository:
    """All SQL for the working-day calendar, on one connection."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    async def known_years(self) -> list[int]:
        rows = await self._conn.fetch("SELECT year FROM calendar_years ORDER BY year")
        return [row["year"] for row in rows]

    async def loaded_year(self, year: int) -> LoadedYear | None:
        row = await self._conn.fetchrow(
            "SELECT year, source, loaded_by, loaded_at, revision FROM calendar_years "
            "WHERE year = $1",
            year,
        )
        return LoadedYear(**dict(row)) if row is not None else None

    async def days_between(self, first: date, last: date) -> dict[date, CalendarDay]:
        rows = await self._conn.fetch(
            "SELECT day, is_working_day, kind, holiday_name FROM calendar_days "
            "WHERE day BETWEEN $1 AND $2 ORDER BY day",
            first,
            last,
        )
        return {
            r["day"]: CalendarDay(r["day"], r["is_working_day"], r["kind"], r["holiday_name"])
            for r in rows
        }

    async def snapshot(self, first: date, last: date) -> WorkingDayCalendar:
        """Known years and days read together, consistent even while a year is replaced.

        Inside a step's transaction, the years are read with FOR SHARE: a year being replaced
        (`replace_year` updates its row) makes the step wait for it, then read the new days."""
        if self._conn.is_in_transaction():
            await self._conn.execute("SELECT 1 FROM calendar_years FOR SHARE")
            known = await self.known_years()
            days = await self.days_between(first, last)
        else:
            async with self._conn.transaction(isolation="repeatable_read", readonly=True):
                known = await self.known_years()
                days = await self.days_between(first, last)
        return WorkingDayCalendar(days, frozenset(known), first, last)

    async def arrangement(self, year: int) -> YearArrangement | None:
        """The loaded year read back as an arrangement (adjacent same-name ranges merged)."""
        loaded = await self.loaded_year(year)
        if loaded is None:
            return None
        days = await self.days_between(date(year, 1, 1), date(year, 12, 31))
        holidays: list[HolidayRange] = []
        makeups: list[MakeupWorkday] = []
        for d in days.values():
            if d.kind == "holiday" and d.holiday_name is not None:
                prev = holidays[-1] if holidays else None
                if prev and prev.name == d.holiday_name and prev.last + timedelta(1) == d.day:
                    holidays[-1] = prev.model_copy(update={"last": d.day})
                else:
                    holidays.append(HolidayRange(name=d.holiday_name, first=d.day, last=d.day))
            elif d.kind == "makeup_workday":
                makeups.append(MakeupWorkday(day=d.day, for_holiday=d.holiday_name or "?"))
        return YearArrangement.model_construct(
            year=year, source=loaded.source, holidays=holidays, makeup_workdays=makeups
        )

    async def _write_days(self, arr: YearArrangement) -> None:
        await self._conn.executemany(
            "INSERT INTO calendar_days (day, year, is_working_day, kind, holiday_name) "
            "VALUES ($1, $2, $3, $4, $5)",
            [
                (d.day, arr.year, d.is_working_day, d.kind, d.holiday_name)
                for d in arrangement_days(arr)
            ],
        )

    async def replace_year(self, arrangement: YearArrangement, loaded_by: str) -> int:
        """Load the year, replacing what was there, all or nothing; returns the new revision."""
        async with self._conn.transaction():
            revision: int = await self._conn.fetchval(
                """
                INSERT INTO calendar_years (year, source, loaded_by) VALUES ($1, $2, $3)
                ON CONFLICT (year) DO UPDATE
                   SET source = EXCLUDED.source, loaded_by = EXCLUDED.loaded_by,
                       loaded_at = now(), revision = calendar_years.revision + 1
                RETURNING revision
                """,
                arrangement.year,
                arrangement.source,
                loaded_by,
            )
            await self._conn.execute("DELETE FROM calendar_days WHERE year = $1", arrangement.year)
            await self._write_days(arrangement)
        log.info("calendar year loaded", year=arrangement.year, revision=revision, by=loaded_by)
        return revision

    async def seed_from_package(self, loaded_by: str = PACKAGE_LOADER) -> list[int]:
        """Insert every year `chinese-calendar` knows that is not loaded yet; never overwrites a
        year already there (an operator's load wins). Returns the years seeded now."""
        seeded: list[int] = []
        async with self._conn.transaction():
            for year in package_years():
                arrangement = arrangement_from_package(year)
                inserted = await self._conn.fetchval(
                    "INSERT INTO calendar_years (year, source, loaded_by) VALUES ($1, $2, $3) "
                    "ON CONFLICT (year) DO NOTHING RETURNING year",
                    year,
                    arrangement.source,
                    loaded_by,
                )
                if inserted is not None:
                    await self._write_days(arrangement)
                    seeded.append(year)
        if seeded:
            log.info("calendar seeded from chinese-calendar", years=seeded)
        return seeded


async def seed_calendar(dsn: str, loaded_by: str = PACKAGE_LOADER) -> list[int]:
    """Seed the database at `dsn` from `chinese-calendar` (see `seed_from_package`)."""
    conn = await asyncpg.connect(dsn)
    try:
        return await CalendarRepository(conn).seed_from_package(loaded_by)
    finally:
        await conn.close()
