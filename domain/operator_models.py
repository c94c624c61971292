"""What the operator workflows take and return."""

from __future__ import annotations

from datetime import date

from pydantic import Field

from domain.calendar_models import YearArrangement
from domain.models import Model


class LoadCalendarInput(Model):
    arrangement: YearArrangement
    loaded_by: str = Field(min_length=1, max_length=200)


class LoadCalendarResult(Model):
    year: int
    revision: int
    unchanged: bool = Field(description="the same arrangement was loaded already")
    provisional_cases: list[str] = Field(default_factory=list)
    cases_told: int = 0


class PolicySummaryRequest(Model):
    on: date


class PolicySummary(Model):
    active_version: str
    effective_from: date
    versions: list[str]
    categories: dict[str, str] = Field(description="category key → title")
