"""The official working-day arrangement of one year, as operators load it (pure models).

Shared by the calendar activities, which store and count it, and the API, which accepts it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from domain.models import NUL_REFUSED, holds_nul

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


_YYYY_MM_DD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _written_date(value: object) -> object:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    # Only the written form: pydantic would also read "1798848000" (a Unix time) or
    # "2027-01-02T00:00:00+08:00" as a date.
    if not isinstance(value, str) or not _YYYY_MM_DD.fullmatch(value):
        raise ValueError(f"expected a date written YYYY-MM-DD, got {value!r}")
    return value


WrittenDate = Annotated[date, BeforeValidator(_written_date)]


class _FileModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, str_strip_whitespace=True
    )

    @field_validator("*", mode="after")
    @classmethod
    def _storable_text(cls, value: object) -> object:
        """A NUL character (U+0000) cannot be stored in the calendar tables: refused here, naming
        the field, rather than by PostgreSQL in the middle of a load."""
        if holds_nul(value):
            raise ValueError(NUL_REFUSED)
        return value


class HolidayRange(_FileModel):
    """Days off for one holiday, `from` and `to` inclusive (weekend days inside it included)."""

    name: str = Field(min_length=1)
    first: WrittenDate = Field(alias="from")
    last: WrittenDate = Field(alias="to")

    def days(self) -> list[date]:
        return [self.first + timedelta(n) for n in range((self.last - self.first).days + 1)]


class MakeupWorkday(_FileModel):
    """A Saturday or Sunday worked in exchange for a holiday (调休)."""

    day: WrittenDate = Field(alias="date")
    for_holiday: str = Field(alias="for", min_length=1)


class YearArrangement(_FileModel):
    """One year's official arrangement, as the State Council publishes it."""

    year: int = Field(ge=2000, le=2100)
    source: str = Field(min_length=1, description="e.g. the State Council notice it comes from")
    holidays: list[HolidayRange]
    makeup_workdays: list[MakeupWorkday]

    @model_validator(mode="after")
    def _consistent(self) -> YearArrangement:
        problems = [*self._misplaced_days(), *self._overlaps(), *self._makeup_conflicts()]
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _misplaced_days(self) -> Iterable[str]:
        for i, h in enumerate(self.holidays):
            for key, day in (("from", h.first), ("to", h.last)):
                if day.year != self.year:
                    yield f"holidays[{i}].{key}: {day} is not in {self.year}"
            if h.first > h.last:
                yield f"holidays[{i}].to: {h.last} is before from ({h.first})"
        for j, m in enumerate(self.makeup_workdays):
            if m.day.year != self.year:
                yield f"makeup_workdays[{j}].date: {m.day} is not in {self.year}"
            if m.day.weekday() < 5:
                yield (
                    f"makeup_workdays[{j}].date: {m.day} is a {WEEKDAYS[m.day.weekday()]}; "
                    "a make-up working day is a Saturday or Sunday"
                )

    def _overlaps(self) -> Iterable[str]:
        for i, a in enumerate(self.holidays):
            for k, b in enumerate(self.holidays[i + 1 :], start=i + 1):
                if a.first <= b.last and b.first <= a.last:
                    yield (
                        f"holidays[{k}]: {b.name} {b.first}..{b.last} overlaps "
                        f"holidays[{i}] ({a.name} {a.first}..{a.last})"
                    )

    def _makeup_conflicts(self) -> Iterable[str]:
        seen: dict[date, int] = {}
        for j, m in enumerate(self.makeup_workdays):
            if m.day in seen:
                yield f"makeup_workdays[{j}].date: {m.day} is listed twice (see [{seen[m.day]}])"
            seen.setdefault(m.day, j)
            for i, h in enumerate(self.holidays):
                if h.first <= m.day <= h.last:
                    yield (
                        f"makeup_workdays[{j}].date: {m.day} is inside holidays[{i}] "
                        f"({h.name}); a day cannot be both a holiday and a make-up working day"
                    )
