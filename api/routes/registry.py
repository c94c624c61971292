"""GET /cases: the case register, filtered, in keyset pages (read from PostgreSQL, not Temporal)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from api import problems
from api.auth import REGISTER_READING, AccessRoute
from api.deps import DbPool, Keys
from api.problems import Problem
from api.read_models import NO_NUL, CaseCursor, CaseFilters, CaseListReader, CasePage, InvalidCursor
from domain.models import Outcome, Stage, SubjectIdentifiers
from wiring.keys import Keyring
from workflows import search

# Days a case can have opened on: the Cybersecurity Law took effect in 2017; nothing in the
# register is older than 2000 or later than 2100, and outside this a day has no Beijing midnight
# that PostgreSQL and Python agree on (year 1, year 9999).
EARLIEST, LATEST = date(2000, 1, 1), date(2100, 12, 31)

router = APIRouter(tags=["cases"], route_class=AccessRoute)


def _text(description: str) -> Any:
    return Query(min_length=1, max_length=200, pattern=NO_NUL, description=description)


def _invalid(parameter: str, message: str) -> Problem:
    """The same problem document FastAPI's own validation answers with, naming the parameter."""
    return Problem.invalid([(f"query.{parameter}", message)])


@router.get(
    "/cases",
    response_model=CasePage,
    responses=problems.responses((422, "a filter, the limit or the cursor is invalid")),
    dependencies=[Depends(REGISTER_READING)],
)
async def list_cases(
    pool: DbPool,
    keyring: Keys,
    stage: Annotated[Stage | None, Query(description="the case's current stage")] = None,
    category: Annotated[str | None, _text("violation category")] = None,
    office: Annotated[str | None, _text("the issuing office")] = None,
    subject: Annotated[
        str | None,
        _text(
            "part of the subject's name (any case), or one of its identifiers exactly "
            "(domain, ICP filing, app package, credit code, account id)"
        ),
    ] = None,
    overdue: Annotated[
        bool | None, Query(description="true: open and past its deadline; false: all others")
    ] = None,
    deadline_within_days: Annotated[
        int | None,
        Query(ge=1, le=366, description="open, deadline between now and now + N days"),
    ] = None,
    opened_from: Annotated[
        date | None,
        Query(ge=EARLIEST, le=LATEST, description="opened on or after this day (Beijing time)"),
    ] = None,
    opened_to: Annotated[
        date | None,
        Query(ge=EARLIEST, le=LATEST, description="opened on or before this day (Beijing time)"),
    ] = None,
    campaign: Annotated[str | None, _text("opened under this campaign")] = None,
    outcome: Annotated[Outcome | None, Query(description="closed with this outcome")] = None,
    closed: Annotated[bool | None, Query(description="true: closed; false: open")] = None,
    cursor: Annotated[
        str | None,
        Query(max_length=1000, description="`next_cursor` of the previous page"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200, description="items per page")] = 50,
) -> CasePage:
    """Cases from the register, newest first (opened_at desc, then case_id desc).

    Filters combine with AND. `overdue` and `deadline_within_days` are measured against the
    time of the request. Pages are keyset pages: `next_cursor` is the position after the last
    item, so a case opened while paging never shifts a page or repeats an item.
    """
    if opened_from is not None and opened_to is not None and opened_from > opened_to:
        raise _invalid("opened_to", f"is before opened_from ({opened_from.isoformat()})")
    after = None
    if cursor is not None:
        try:
            after = CaseCursor.decode(cursor)
        except InvalidCursor as exc:
            raise _invalid("cursor", str(exc)) from exc
    filters = CaseFilters(
        stage=stage,
        category=category,
        office=office,
        subject=subject,
        overdue=overdue,
        deadline_within_days=deadline_within_days,
        opened_from=opened_from,
        opened_to=opened_to,
        campaign=campaign,
        outcome=outcome,
        closed=closed,
    )
    async with pool.acquire() as conn:
        page = await CaseListReader(conn).page(
            filters, limit=limit, after=after, now=datetime.now(UTC)
        )
    if subject is not None:
        page.temporal_query = subject_query(keyring, subject)
    return page


def subject_query(keyring: Keyring, identifier: str) -> str:
    """The visibility query for cases whose subject holds `identifier` as any kind of
    identifier: its keyed hash as each kind (workflows/search.py)."""
    digests = ", ".join(
        f"'{keyring.subject_digest(kind, identifier)}'" for kind in SubjectIdentifiers.model_fields
    )
    return f"{search.SUBJECT_DIGEST.name} IN ({digests})"
