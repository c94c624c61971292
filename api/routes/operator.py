"""Operator endpoints (admin): the working-day calendar of a year, and the policy in force.

Reads come from PostgreSQL; loading a year goes through the worker (LoadCalendarWorkflow), which
writes it with an idempotent activity and tells the cases with provisional deadlines.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Path
from pydantic import BaseModel

from api import problems
from api.auth import ADMIN_ONLY, AccessRoute
from api.case_calls import answer_within
from api.deps import AppSettings, DbPool, TemporalClient
from api.examples import CALENDAR_EXAMPLE, body_example
from api.problems import Problem
from domain.calendar_models import YearArrangement
from domain.operator_models import LoadCalendarInput, LoadCalendarResult, PolicySummary
from wiring.api_keys import ApiKey
from workflows.operator import LoadCalendarWorkflow, PolicySummaryWorkflow

router = APIRouter(tags=["operator"], route_class=AccessRoute)
Year = Path(ge=2000, le=2100, description="a calendar year")


class HolidayView(BaseModel):
    name: str
    first: date
    last: date


class CalendarYearView(BaseModel):
    year: int
    source: str
    loaded_by: str
    loaded_at: datetime
    revision: int
    holidays: list[HolidayView]
    makeup_workdays: list[date]


@router.get(
    "/calendar/{year}",
    response_model=CalendarYearView,
    responses=problems.responses((404, "no arrangement loaded for the year"), 422),
    dependencies=[Depends(ADMIN_ONLY)],
)
async def get_calendar(pool: DbPool, year: int = Year) -> CalendarYearView:
    """The official arrangement loaded for a year: holidays and make-up working days."""
    loaded = await pool.fetchrow(
        "SELECT year, source, loaded_by, loaded_at, revision FROM calendar_years WHERE year = $1",
        year,
    )
    if loaded is None:
        raise Problem(
            404,
            "calendar-year-not-loaded",
            f"no official arrangement for {year}: deadlines in it are provisional "
            "(weekdays only) until one is loaded",
            year=year,
        )
    days = await pool.fetch(
        "SELECT day, kind, holiday_name FROM calendar_days WHERE year = $1"
        " AND kind IN ('holiday', 'makeup_workday') ORDER BY day",
        year,
    )
    holidays: list[HolidayView] = []
    for row in days:
        if row["kind"] != "holiday":
            continue
        last = holidays[-1] if holidays else None
        if last and last.name == row["holiday_name"] and (row["day"] - last.last).days == 1:
            last.last = row["day"]
        else:
            holidays.append(
                HolidayView(name=row["holiday_name"], first=row["day"], last=row["day"])
            )
    return CalendarYearView(
        **dict(loaded),
        holidays=holidays,
        makeup_workdays=[row["day"] for row in days if row["kind"] == "makeup_workday"],
    )


@router.put(
    "/calendar/{year}",
    openapi_extra=body_example(CALENDAR_EXAMPLE),
    response_model=LoadCalendarResult,
    responses=problems.responses(413, 422, (504, "the worker did not answer in time")),
)
async def put_calendar(
    body: YearArrangement,
    client: TemporalClient,
    settings: AppSettings,
    caller: Annotated[ApiKey, Depends(ADMIN_ONLY)],
    year: int = Year,
) -> LoadCalendarResult:
    """Load a year's official arrangement (the State Council's notice); open cases with a
    provisional deadline are told to recompute it. Loading the same arrangement again changes
    nothing."""
    if body.year != year:
        raise Problem.invalid([("year", f"the body is for {body.year}, the path for {year}")])
    request = LoadCalendarInput(arrangement=body, loaded_by=f"key:{caller.prefix} ({caller.label})")
    async with answer_within(f"calendar {year}", settings.case_answer_timeout_s):
        result: LoadCalendarResult = await client.execute_workflow(
            LoadCalendarWorkflow.run,
            request,
            id=f"calendar-load:{year}:{uuid.uuid4().hex[:12]}",
            task_queue=settings.task_queue,
        )
    return result


@router.get(
    "/policy",
    response_model=PolicySummary,
    responses=problems.responses((504, "the worker did not answer in time")),
    dependencies=[Depends(ADMIN_ONLY)],
)
async def get_policy(client: TemporalClient, settings: AppSettings) -> PolicySummary:
    """The policy version in force today, the versions the worker holds, and the categories."""
    async with answer_within("policy", settings.case_answer_timeout_s):
        summary: PolicySummary = await client.execute_workflow(
            PolicySummaryWorkflow.run,
            id=f"policy-summary:{uuid.uuid4().hex[:12]}",
            task_queue=settings.task_queue,
        )
    return summary
