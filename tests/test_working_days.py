"""Counting deadlines on China's official calendar: holidays, make-up weekends, provisional years.

Pure counts use snapshots built from `chinese-calendar`'s real 2025-2026 data. The activity runs
against real PostgreSQL: 2026 on the session database (seeded by the `pool` fixture), 2027 only
in a scratch database, so the example 2027 arrangement never leaks into other tests.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta

import asyncpg
import pytest
from temporalio.testing import ActivityEnvironment

from activities.calendar import (
    CalendarError,
    CalendarRepository,
    CalendarSpanError,
    WorkingDayCalendar,
    YearArrangement,
    arrangement_days,
    arrangement_from_package,
    calendar_period_deadline,
    load_arrangement_file,
    working_deadline,
)
from activities.deadlines import DeadlineActivities, compute_deadline_on
from activities.steps import StepActivities
from domain.models import Stage, case_workflow_id
from domain.records import DeadlineRequest, OpeningRequest, PeriodRequest, StepRecord
from tests.conftest import POLICIES, open_case_input, scratch_database
from wiring.db import create_pool
from wiring.settings import REPO_ROOT

EXAMPLE_2027 = REPO_ROOT / "ops" / "examples" / "calendar-2027.yaml"
OFFICIAL = WorkingDayCalendar.of(arrangement_from_package(2025), arrangement_from_package(2026))


def beijing(year: int, month: int, day: int, hour: int = 10) -> datetime:
    """`hour` o'clock in Beijing, as the UTC instant a workflow would pass."""
    return datetime(year, month, day, hour, tzinfo=UTC) - timedelta(hours=8)


def days(*isodates: str) -> list[str]:
    return list(isodates)


def span(first: str, last: str) -> list[str]:
    a, b = date.fromisoformat(first), date.fromisoformat(last)
    return [(a + timedelta(n)).isoformat() for n in range((b - a).days + 1)]


# --- the package data these tests rely on -----------------------------------------------------


def test_package_2026_is_the_official_arrangement() -> None:
    arr = arrangement_from_package(2026)
    national = next(h for h in arr.holidays if h.name == "National Day")
    spring = next(h for h in arr.holidays if h.name == "Spring Festival")
    assert (national.first, national.last) == (date(2026, 10, 1), date(2026, 10, 7))
    assert (spring.first, spring.last) == (date(2026, 2, 15), date(2026, 2, 23))
    assert [m.day.isoformat() for m in arr.makeup_workdays] == days(
        "2026-01-04", "2026-02-14", "2026-02-28", "2026-05-09", "2026-09-20", "2026-10-10"
    )


def test_arrangement_days_cover_the_year() -> None:
    rows = arrangement_days(arrangement_from_package(2026))
    assert len(rows) == 365 and rows[0].day == date(2026, 1, 1) and rows[-1].day.month == 12
    by_day = {r.day: r for r in rows}
    assert by_day[date(2026, 10, 3)].kind == "holiday"  # a Saturday inside National Day
    assert by_day[date(2026, 10, 10)].kind == "makeup_workday"
    assert by_day[date(2026, 10, 10)].is_working_day
    assert by_day[date(2026, 10, 11)].kind == "rest_day"
    leap = YearArrangement(year=2028, source="test", holidays=[], makeup_workdays=[])
    assert len(arrangement_days(leap)) == 366


def test_package_refuses_a_year_it_does_not_know() -> None:
    with pytest.raises(CalendarError, match=r"no data for 2027.*rectify calendar load"):
        arrangement_from_package(2027)


# --- working days -----------------------------------------------------------------------------


def test_working_days_across_national_day_2026() -> None:
    # Tuesday 29 September: Wed 30 is day 1, Oct 1-7 are off, Thu 8, Fri 9, Sat 10 (make-up)
    # are days 2-4, Sunday 11 is off, Monday 12 is day 5.
    d = working_deadline(beijing(2026, 9, 29), 5, OFFICIAL)
    assert (d.kind, d.days, d.start_day, d.last_day) == ("working", 5, "2026-09-29", "2026-10-12")
    assert d.due_at == datetime(2026, 10, 12, 16, 0, tzinfo=UTC)
    assert d.skipped_days == [*span("2026-10-01", "2026-10-07"), "2026-10-11"]
    assert d.makeup_workdays == ["2026-10-10"]
    assert not d.provisional and d.provisional_years == []
    assert "2026-10-01 to 2026-10-07 (National Day holiday)" in d.explanation
    assert "2026-10-10 (make-up working Saturday for National Day)" in d.explanation
    assert "the last day is 2026-10-12" in d.explanation
    assert "provisional" not in d.explanation


def test_working_days_across_spring_festival_2026() -> None:
    # Thursday 12 February: Fri 13 is day 1, Sat 14 (make-up) day 2, Feb 15-23 off, Tue 24 day 3.
    d = working_deadline(beijing(2026, 2, 12), 3, OFFICIAL)
    assert d.last_day == "2026-02-24"
    assert d.skipped_days == span("2026-02-15", "2026-02-23")
    assert d.makeup_workdays == ["2026-02-14"]
    assert "Spring Festival holiday" in d.explanation


def test_start_day_is_never_counted() -> None:
    # 23:30 Monday in Beijing: one working day is Tuesday, even on a working Monday.
    monday_late = datetime(2026, 3, 2, 15, 30, tzinfo=UTC)
    assert working_deadline(monday_late, 1, OFFICIAL).last_day == "2026-03-03"
    # One hour later it is already Tuesday in Beijing: the count starts after Tuesday.
    assert working_deadline(monday_late + timedelta(hours=1), 1, OFFICIAL).last_day == "2026-03-04"
    # From a Friday, the next working day is Monday; the weekend is passed over.
    friday = working_deadline(beijing(2026, 3, 6), 1, OFFICIAL)
    assert (friday.last_day, friday.skipped_days) == (
        "2026-03-09",
        days("2026-03-07", "2026-03-08"),
    )


# --- calendar days ----------------------------------------------------------------------------


def test_calendar_period_ending_on_a_holiday_moves_to_the_next_working_day() -> None:
    d = calendar_period_deadline(beijing(2026, 9, 16), 15, OFFICIAL)  # 16 Sep + 15 = 1 Oct
    assert (d.kind, d.last_day) == ("calendar", "2026-10-08")
    assert d.due_at == datetime(2026, 10, 8, 16, 0, tzinfo=UTC)
    assert d.skipped_days == span("2026-10-01", "2026-10-07")
    assert "end on 2026-10-01" in d.explanation and "National Day holiday" in d.explanation
    assert "next working day, 2026-10-08" in d.explanation


def test_calendar_period_ending_on_a_weekend_moves_to_monday() -> None:
    d = calendar_period_deadline(beijing(2026, 3, 2), 5, OFFICIAL)  # Saturday 7 March
    assert d.last_day == "2026-03-09"
    assert d.skipped_days == days("2026-03-07", "2026-03-08")
    assert d.due_at == datetime(2026, 3, 9, 16, 0, tzinfo=UTC)


def test_calendar_period_ending_on_a_makeup_saturday_stays() -> None:
    d = calendar_period_deadline(beijing(2026, 9, 30), 10, OFFICIAL)  # Saturday 10 October
    assert (d.last_day, d.skipped_days, d.makeup_workdays) == ("2026-10-10", [], ["2026-10-10"])
    assert "make-up working Saturday for National Day" in d.explanation


def test_calendar_days_run_through_holidays_in_the_middle() -> None:
    # 10 December 2025 + 90 days = Tuesday 10 March 2026: Spring Festival inside the period
    # does not stop a calendar-day count; only the end day is checked.
    d = calendar_period_deadline(beijing(2025, 12, 10), 90, OFFICIAL)
    assert (d.last_day, d.skipped_days, d.makeup_workdays) == ("2026-03-10", [], [])
    assert "the last day is 2026-03-10" in d.explanation


# --- years without official data --------------------------------------------------------------


def test_a_year_without_data_is_counted_as_weekdays_and_provisional() -> None:
    only_2026 = WorkingDayCalendar.of(arrangement_from_package(2026))
    d = working_deadline(beijing(2026, 12, 29), 5, only_2026)
    # Wed 30, Thu 31, Fri 1 Jan (a weekday: no data says otherwise), Mon 4, Tue 5.
    assert (d.last_day, d.provisional, d.provisional_years) == ("2027-01-05", True, [2027])
    assert "provisional: no official calendar for 2027" in d.explanation
    official = WorkingDayCalendar.of(
        arrangement_from_package(2026), load_arrangement_file(EXAMPLE_2027)
    )
    d = working_deadline(beijing(2026, 12, 29), 5, official)
    assert (d.last_day, d.provisional, d.provisional_years) == ("2027-01-06", False, [])
    assert "2027-01-01 to 2027-01-03 (New Year's Day holiday)" in d.explanation


def test_a_count_that_stays_in_known_years_is_not_provisional() -> None:
    only_2026 = WorkingDayCalendar.of(arrangement_from_package(2026))
    assert not working_deadline(beijing(2026, 12, 21), 5, only_2026).provisional


def test_a_count_past_its_snapshot_asks_for_more() -> None:
    narrow = WorkingDayCalendar(
        OFFICIAL.days, OFFICIAL.known_years, date(2026, 9, 29), date(2026, 10, 9)
    )
    with pytest.raises(CalendarSpanError) as caught:
        working_deadline(beijing(2026, 9, 29), 5, narrow)
    assert caught.value.day == date(2026, 10, 10)


# --- the activity, on real PostgreSQL ---------------------------------------------------------


async def test_activity_counts_on_the_seeded_official_calendar(pool: asyncpg.Pool) -> None:
    activities = DeadlineActivities(pool)
    env = ActivityEnvironment()
    working = await env.run(
        activities.compute_deadline,
        DeadlineRequest(start=beijing(2026, 9, 29), days=5, kind="working"),
    )
    assert working == working_deadline(beijing(2026, 9, 29), 5, OFFICIAL)
    assert working.last_day == "2026-10-12" and working.makeup_workdays == ["2026-10-10"]
    calendar = await env.run(
        activities.compute_deadline, DeadlineRequest(start=beijing(2026, 9, 16), days=15)
    )
    assert (calendar.kind, calendar.last_day) == ("calendar", "2026-10-08")


async def test_compute_deadline_on_counts_inside_the_callers_transaction(
    pool: asyncpg.Pool,
) -> None:
    request = DeadlineRequest(start=beijing(2026, 9, 29), days=5, kind="working")
    async with pool.acquire() as conn, conn.transaction():
        shared = await compute_deadline_on(conn, request)
    assert shared == await ActivityEnvironment().run(
        DeadlineActivities(pool).compute_deadline, request
    )


async def test_activity_extends_its_span_for_long_periods(pool: asyncpg.Pool) -> None:
    d = await ActivityEnvironment().run(
        DeadlineActivities(pool).compute_deadline,
        DeadlineRequest(start=beijing(2025, 1, 2), days=200, kind="working"),
    )
    assert d == working_deadline(beijing(2025, 1, 2), 200, OFFICIAL)
    assert not d.provisional


@pytest.fixture
async def scratch_pool(pg_dsn: str, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Pool]:
    """A fresh database, migrated and seeded from the package: 2026 known, 2027 not."""
    async with scratch_database(pg_dsn, seeded=True) as dsn:
        scratch = await create_pool(dsn, min_size=1, max_size=2)
        yield scratch
        await scratch.close()


async def test_provisional_deadline_is_recomputed_once_2027_is_loaded(
    scratch_pool: asyncpg.Pool,
) -> None:
    activities = DeadlineActivities(scratch_pool)
    env = ActivityEnvironment()
    # Wednesday 29 September 2027, 5 working days, before the 2027 arrangement exists.
    request = DeadlineRequest(start=beijing(2027, 9, 29), days=5, kind="working")
    before = await env.run(activities.compute_deadline, request)
    assert (before.provisional, before.provisional_years) == (True, [2027])
    assert before.last_day == "2027-10-06"  # Thu 30, Fri 1, Mon 4, Tue 5, Wed 6
    assert "provisional: no official calendar for 2027" in before.explanation

    async with scratch_pool.acquire() as conn:
        await CalendarRepository(conn).replace_year(
            load_arrangement_file(EXAMPLE_2027), "officer.wang"
        )

    after = await env.run(activities.compute_deadline, request)
    # Thu 30; Oct 1-7 National Day; Fri 8; Sat 9 (make-up); Sun 10 off; Mon 11; Tue 12.
    assert (after.provisional, after.provisional_years) == (False, [])
    assert after.last_day == "2027-10-12"
    assert after.due_at == datetime(2027, 10, 12, 16, 0, tzinfo=UTC)
    assert after.makeup_workdays == ["2027-10-09"]
    assert after.skipped_days == [*span("2027-10-01", "2027-10-07"), "2027-10-10"]
    assert "National Day holiday" in after.explanation
    assert "make-up working Saturday" in after.explanation
    assert "provisional" not in after.explanation


async def test_a_step_keeps_the_deadline_it_counted_when_the_calendar_changes(
    scratch_pool: asyncpg.Pool,
) -> None:
    """A step's deadlines are counted once, in its transaction: its retry gets them back from the
    audit row, even after the calendar they were counted on changed."""
    steps = StepActivities(scratch_pool, POLICIES)
    env = ActivityEnvironment()
    opened = open_case_input()
    case_id = opened.case_id
    await env.run(
        steps.open_case,
        OpeningRequest(
            opened=opened, workflow_id=case_workflow_id(case_id), opened_at=beijing(2027, 9, 28)
        ),
    )
    at = beijing(2027, 9, 29)
    step = StepRecord(
        case_id=case_id,
        workflow_id=case_workflow_id(case_id),
        office=opened.office,
        seq=2,
        action="rectification_ordered",
        from_stage=Stage.FILING,
        to_stage=Stage.RECTIFYING,
        actor="officer.li",
        occurred_at=at,
        periods=[PeriodRequest(name="rectification", start=at, days=5, kind="working")],
        pending_periods=["rectification"],
    )
    first = await env.run(steps.record_step, step)
    counted = first.deadlines["rectification"]
    assert (counted.last_day, counted.provisional) == ("2027-10-06", True)
    row = await scratch_pool.fetchrow(
        "SELECT deadline_at, deadline_provisional FROM cases WHERE case_id = $1", case_id
    )
    assert row is not None and (row["deadline_at"], row["deadline_provisional"]) == (
        counted.due_at,
        True,
    )

    async with scratch_pool.acquire() as conn:
        await CalendarRepository(conn).replace_year(
            load_arrangement_file(EXAMPLE_2027), "officer.wang"
        )

    again = await env.run(steps.record_step, step)  # the retry, on the new calendar
    assert again.duplicate and again.deadlines == first.deadlines
    # Counted afresh, the period now ends after National Day: the retry did not recount it.
    recount = await env.run(
        DeadlineActivities(scratch_pool).compute_deadline,
        DeadlineRequest(start=at, days=5, kind="working"),
    )
    assert (recount.last_day, recount.provisional) == ("2027-10-12", False)
    audit = await scratch_pool.fetchval(
        "SELECT count(*) FROM case_audit WHERE case_id = $1", case_id
    )
    assert audit == 2
    after = await scratch_pool.fetchrow(
        "SELECT deadline_at, deadline_provisional FROM cases WHERE case_id = $1", case_id
    )
    assert after is not None and dict(after) == dict(row)
