"""What the operator workflows take and return."""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal

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


# How a case's run can end without an outcome: an operator then reopens or closes the case.
InterruptedStatus = Literal["failed", "terminated", "timed_out", "canceled"]


class CaseInterruption(Model):
    """A case whose latest run ended without an outcome, as the API found it. The register keeps
    `{status, run_id, detected_at, ended_at, detail}` until a step of a new run is written."""

    case_id: str
    run_id: str = Field(min_length=1)
    status: InterruptedStatus
    ended_at: datetime | None = Field(None, description="when the run ended (Temporal's close)")
    detected_at: datetime = Field(description="when the API found it so")
    detail: str | None = Field(None, description="the termination reason or failure message")

    def register_value(self) -> dict[str, object]:
        return self.model_dump(mode="json", exclude={"case_id"})


class InterruptionMarked(Model):
    case_id: str
    marked: bool = Field(
        description="false: already marked for this run, closed, or a later run wrote a step"
    )
