"""GET /stats: one year's published figures, from the register and the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from api import problems
from api.auth import STATISTICS, AccessRoute
from api.deps import DbPool
from api.read_models import LOCAL_TZ, NO_NUL, CaseStatistics, CaseStatisticsReader, StatsScope

router = APIRouter(tags=["statistics"], route_class=AccessRoute)


@router.get(
    "/stats",
    response_model=CaseStatistics,
    responses=problems.responses(422),
    dependencies=[Depends(STATISTICS)],
)
async def case_statistics(
    pool: DbPool,
    year: Annotated[
        int | None,
        Query(ge=2000, le=2100, description="Beijing calendar year; default: the current one"),
    ] = None,
    office: Annotated[
        str | None,
        Query(min_length=1, max_length=200, pattern=NO_NUL, description="one office only"),
    ] = None,
    category: Annotated[
        str | None,
        Query(min_length=1, max_length=200, pattern=NO_NUL, description="one violation category"),
    ] = None,
) -> CaseStatistics:
    """The year's figures. "The year" is the Asia/Shanghai calendar year of the event each
    figure counts; `office` and `category` are the case's. Each figure counts cases, a case at
    most once per figure.

    From the audit trail (the event is the audit row's `occurred_at`):
    - **interviewed**: cases with an `interview_recorded` action in the year.
    - **fined**: cases with a fine decided in the year: `penalty_decided` whose
      `payload.measure` is `fine`.
    - **fines_total_yuan**: the sum over those decisions of `payload.fine_yuan`: the fines
      decided on the party, not what was paid, and not fines on responsible persons.
    - **suspended_or_updated**: cases with a `penalty_decided` whose measure is
      `suspend_functions` (suspend related functions / order an update).
    - **clues_transferred**: cases with a `referral_sent` in the year to another authority,
      except a referral that carries out the case's own decision (`payload.closes_with`
      `app_removed` or `shut_down`: app stores removing the app, the telecom authority shutting
      the site). That covers a clue transferred at filing (`clue_transferred`, then its
      `referral_sent`), an escalation to the police (`referral_sent` once approved) and a
      referral made while the case goes on. A criminal referral still awaiting approval has not
      been sent and does not count yet.
    - **over_handling_limit**: cases the workflow flagged `handling_limit_exceeded` in the year:
      90 days from filing (policy `limits.handling`), counted on the working-day calendar and
      moved by approved extensions. The flag is the workflow's own computation, so a case
      extended in time is not counted.

    From the register (`cases`):
    - **warned**, **apps_removed**, **shut_down_or_licence_cancelled**: cases closed in the year
      (`closed_at`) with outcome `warned`, `app_removed`, `shut_down`.
    - **closed**: cases closed in the year, any outcome (not filed and withdrawn included).
    - **median_days_to_close**: the median (`percentile_cont(0.5)`) of `closed_at - opened_at`
      in days over the cases closed in the year; null when none closed.
    - **opened**: cases opened in the year (`opened_at`).
    - **overdue**: of the cases opened in the year, those open now whose pending deadline
      (`deadline_at`) has passed (`as_of` is "now").
    """
    now = datetime.now(UTC)
    scope = StatsScope(
        year=year if year is not None else now.astimezone(LOCAL_TZ).year,
        office=office,
        category=category,
    )
    async with pool.acquire() as conn:
        return await CaseStatisticsReader(conn).year(scope, now=now)
