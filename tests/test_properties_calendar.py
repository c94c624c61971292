"""Properties of the deadline calculator (activities/calendar.py: `working_deadline`,
`calendar_period_deadline`) on generated official calendars.

Each calendar is one or two generated years' arrangements (holiday ranges, make-up working
weekends), or chinese-calendar's real 2025-2026; a year without an arrangement follows the
weekday rule and makes the count provisional. Proven for any start and any length:

- n working days: the last day is a working day after the start day, with exactly n working
  days from the day after the start day up to it; it grows strictly with n; n then m working
  days is n + m; every day passed over is exactly a day off in between.
- make-up weekends count as working days, holidays never do;
- n calendar days: the end is the first working day on or after start + n, and grows with n;
- deadlines end at 24:00 Beijing time of the last day, and are provisional exactly when they
  looked at a year with no official data.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from activities.calendar import (
    LOCAL_TZ,
    WEEKDAYS,
    WorkingDayCalendar,
    YearArrangement,
    arrangement_days,
    arrangement_from_package,
    calendar_period_deadline,
    local_day,
    working_deadline,
)
from domain.models import Deadline
from tests.strategies import arrangement_data, examples, local_starts

OFFICIAL = WorkingDayCalendar.of(arrangement_from_package(2025), arrangement_from_package(2026))
PERIODS = st.integers(min_value=1, max_value=40) | st.integers(min_value=1, max_value=400)


@st.composite
def calendars(draw: st.DrawFn) -> tuple[WorkingDayCalendar, int]:
    """A calendar and the first year it knows: one or two generated consecutive years, or the
    real 2025-2026."""
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        return OFFICIAL, 2025
    year = draw(st.integers(min_value=2000, max_value=2099))
    arrangements = [YearArrangement.model_validate(draw(arrangement_data(year)))]
    if draw(st.booleans()):
        arrangements.append(YearArrangement.model_validate(draw(arrangement_data(year + 1))))
    return WorkingDayCalendar.of(*arrangements), year


@st.composite
def counts(draw: st.DrawFn) -> tuple[WorkingDayCalendar, datetime, int]:
    """A calendar, a start in its first known year, and a period in days."""
    cal, year = draw(calendars())
    start = draw(local_starts(date(year, 1, 1), date(year, 12, 31)))
    return cal, start, draw(PERIODS)


def noon(day: date) -> datetime:
    """Midday in Beijing on `day`, as a UTC instant."""
    return datetime.combine(day, time(12), LOCAL_TZ).astimezone(UTC)


def days_after(first: date, last: date) -> list[date]:
    """The days after `first` up to and including `last`."""
    return [first + timedelta(n) for n in range(1, (last - first).days + 1)]


def ends_at_midnight(deadline: Deadline) -> None:
    last = date.fromisoformat(deadline.last_day)
    assert deadline.due_at == datetime.combine(last + timedelta(1), time(0), LOCAL_TZ)
    assert deadline.due_at.utcoffset() == timedelta(0)
    assert deadline.due_at.time() == time(16, 0)  # 24:00 in Beijing is 16:00 UTC


def provisional_exactly_when_unofficial(
    deadline: Deadline, cal: WorkingDayCalendar, looked_at: list[date]
) -> None:
    unofficial = sorted({d.year for d in looked_at if not cal.is_official(d)})
    assert deadline.provisional_years == unofficial
    assert deadline.provisional == bool(unofficial)
    assert ("provisional" in deadline.explanation) == bool(unofficial)


# --- working days ----------------------------------------------------------------------------


@examples(80)
@given(count=counts())
def test_n_working_days_end_on_the_nth_working_day_after_the_start(
    count: tuple[WorkingDayCalendar, datetime, int],
) -> None:
    """The last day is a working day after the start's local day; the days after the start up to
    it hold exactly n working days; the days passed over are exactly the days off among them,
    the make-up days counted exactly the make-up weekends among them."""
    cal, start, n = count
    d = working_deadline(start, n, cal)
    start_day, last = local_day(start), date.fromisoformat(d.last_day)
    assert (d.kind, d.days, d.start_day) == ("working", n, start_day.isoformat())
    assert last > start_day
    assert cal.day(last).is_working_day
    between = days_after(start_day, last)
    assert sum(cal.day(day).is_working_day for day in between) == n
    assert d.skipped_days == [x.isoformat() for x in between if not cal.day(x).is_working_day]
    assert d.makeup_workdays == [
        x.isoformat() for x in between if cal.day(x).kind == "makeup_workday"
    ]
    assert f"the last day is {last}" in d.explanation
    ends_at_midnight(d)
    assert d.due_at > (start if start.tzinfo else start.replace(tzinfo=UTC))
    provisional_exactly_when_unofficial(d, cal, between)


@examples(80)
@given(count=counts(), more=st.integers(min_value=1, max_value=60))
def test_working_days_grow_strictly_and_add_up(
    count: tuple[WorkingDayCalendar, datetime, int], more: int
) -> None:
    """n + m working days end strictly after n working days, exactly where m working days
    counted from the n-day deadline's last day end."""
    cal, start, n = count
    first = working_deadline(start, n, cal)
    longer = working_deadline(start, n + more, cal)
    assert longer.last_day > first.last_day
    then = working_deadline(noon(date.fromisoformat(first.last_day)), more, cal)
    assert then.last_day == longer.last_day
    assert first.skipped_days + then.skipped_days == longer.skipped_days
    assert first.makeup_workdays + then.makeup_workdays == longer.makeup_workdays


@examples(60)
@given(count=counts())
def test_the_time_of_day_never_changes_the_count(
    count: tuple[WorkingDayCalendar, datetime, int],
) -> None:
    """Any two instants on the same Beijing day give the same deadline (the start day itself is
    never counted, however early or late in it the count starts)."""
    cal, start, n = count
    day = local_day(start)
    early = datetime.combine(day, time(0), LOCAL_TZ)
    late = datetime.combine(day, time(23, 59, 59, 999999), LOCAL_TZ)
    assert working_deadline(early, n, cal) == working_deadline(start, n, cal)
    assert working_deadline(late, n, cal) == working_deadline(start, n, cal)


@examples(80)
@given(data=arrangement_data(), pick=st.integers(min_value=0, max_value=10**6))
def test_makeup_weekends_count_and_holidays_never_do(data: dict[str, object], pick: int) -> None:
    """The day before a make-up working weekend, one working day ends on it; the day before a
    holiday, one working day ends on the first working day after the holiday (its weekend days
    included), and every day of the holiday is passed over by name."""
    arrangement = YearArrangement.model_validate(data)
    cal = WorkingDayCalendar.of(arrangement)
    rows = {row.day: row for row in arrangement_days(arrangement)}
    for makeup in arrangement.makeup_workdays:
        assert rows[makeup.day].is_working_day and makeup.day.weekday() >= 5
        d = working_deadline(noon(makeup.day - timedelta(1)), 1, cal)
        assert (d.last_day, d.makeup_workdays) == (makeup.day.isoformat(), [d.last_day])
        weekday = WEEKDAYS[makeup.day.weekday()]
        assert f"make-up working {weekday} for {makeup.for_holiday}" in d.explanation
    for holiday in arrangement.holidays:
        assert not any(rows[day].is_working_day for day in holiday.days())
        d = working_deadline(noon(holiday.first - timedelta(1)), 1, cal)
        last = date.fromisoformat(d.last_day)
        assert last > holiday.last and cal.day(last).is_working_day
        assert all(not cal.day(x).is_working_day for x in days_after(holiday.last, last)[:-1])
        assert {x.isoformat() for x in holiday.days()} <= set(d.skipped_days)
        assert f"{holiday.name} holiday" in d.explanation
    # A plain weekday or weekend outside both follows the weekday rule.
    plain = [r for r in rows.values() if r.kind in ("workday", "rest_day")]
    if plain:
        row = plain[pick % len(plain)]
        assert row.is_working_day == (row.day.weekday() < 5)


@examples(30)
@given(count=counts(), days=st.integers(max_value=0))
def test_a_period_counts_at_least_one_day(
    count: tuple[WorkingDayCalendar, datetime, int], days: int
) -> None:
    """Zero or fewer days is refused by both counts, whatever the calendar."""
    cal, start, _ = count
    with pytest.raises(ValueError, match="at least one day"):
        working_deadline(start, days, cal)
    with pytest.raises(ValueError, match="at least one day"):
        calendar_period_deadline(start, days, cal)


# --- calendar days ---------------------------------------------------------------------------


@examples(80)
@given(count=counts())
def test_n_calendar_days_end_on_the_first_working_day_from_start_plus_n(
    count: tuple[WorkingDayCalendar, datetime, int],
) -> None:
    """The end is start + n when that is a working day (a make-up weekend is one); otherwise
    the first working day after it, every day in between passed over."""
    cal, start, n = count
    d = calendar_period_deadline(start, n, cal)
    nominal = local_day(start) + timedelta(n)
    last = date.fromisoformat(d.last_day)
    assert (d.kind, d.days, d.start_day) == ("calendar", n, local_day(start).isoformat())
    assert last >= nominal and cal.day(last).is_working_day
    rolled = [nominal + timedelta(k) for k in range((last - nominal).days)]
    assert all(not cal.day(x).is_working_day for x in rolled)
    assert d.skipped_days == [x.isoformat() for x in rolled]
    kind = cal.day(last).kind
    assert d.makeup_workdays == ([d.last_day] if kind == "makeup_workday" else [])
    ends_at_midnight(d)
    provisional_exactly_when_unofficial(d, cal, [*rolled, last])


@examples(80)
@given(count=counts(), more=st.integers(min_value=1, max_value=60))
def test_calendar_days_never_end_earlier_for_a_longer_period(
    count: tuple[WorkingDayCalendar, datetime, int], more: int
) -> None:
    """A longer period never ends earlier; it ends on the same day only when both ends rolled
    onto the same working day."""
    cal, start, n = count
    short = calendar_period_deadline(start, n, cal)
    long = calendar_period_deadline(start, n + more, cal)
    assert long.last_day >= short.last_day
    if long.last_day == short.last_day:
        assert short.skipped_days  # the shorter end fell on a day off and rolled forward


@examples(60)
@given(count=counts())
def test_a_calendar_period_never_ends_before_the_same_number_of_working_days(
    count: tuple[WorkingDayCalendar, datetime, int],
) -> None:
    """n working days take at least as long as n calendar days (every working day is a day)."""
    cal, start, n = count
    working = working_deadline(start, n, cal)
    calendar = calendar_period_deadline(start, n, cal)
    assert working.last_day >= calendar.last_day
