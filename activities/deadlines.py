"""Deadlines, computed outside the workflow so the rule (and the calendar) can change without
breaking replay: the workflow records the result; a provisional one is recomputed later."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg
import structlog
from temporalio import activity

from activities.calendar import (
    LOCAL_TZ,
    CalendarRepository,
    CalendarSpanError,
    calendar_period_deadline,
    local_day,
    working_deadline,
)
from domain.models import Deadline
from domain.records import DeadlineRequest

__all__ = ["LOCAL_TZ", "DeadlineActivities", "compute_deadline_on"]

if TYPE_CHECKING:
    from asyncpg.pool import PoolConnectionProxy

    Connection: TypeAlias = asyncpg.Connection[Any] | PoolConnectionProxy[Any]

log = structlog.get_logger(__name__)

# Far more than any period needs; a span is doubled while the count runs past it.
MAX_SPAN_DAYS = 20 * 366


def first_span_days(request: DeadlineRequest) -> int:
    """Days after the start day to read: enough for the count and any holiday roll-over."""
    if request.kind == "working":
        return request.days * 2 + 30
    return request.days + 30


async def compute_deadline_on(conn: Connection, request: DeadlineRequest) -> Deadline:
    """Count the period on the official calendar read through `conn` (inside the caller's
    transaction, if any); provisional for years without data."""
    count = working_deadline if request.kind == "working" else calendar_period_deadline
    first = local_day(request.start)
    span = first_span_days(request)
    while True:
        cal = await CalendarRepository(conn).snapshot(first, first + timedelta(span))
        try:
            return count(request.start, request.days, cal)
        except CalendarSpanError:
            if span >= MAX_SPAN_DAYS:
                raise
            span = min(span * 2, MAX_SPAN_DAYS)


class DeadlineActivities:
    """Deadline activities; registered on the worker as bound methods."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @activity.defn(name="compute_deadline")
    async def compute_deadline(self, request: DeadlineRequest) -> Deadline:
        """Recount a provisional deadline (a step sets each deadline in its own activity)."""
        async with self._pool.acquire() as conn:
            deadline = await compute_deadline_on(conn, request)
        log.info(
            "deadline computed",
            kind=deadline.kind,
            days=deadline.days,
            last_day=deadline.last_day,
            provisional=deadline.provisional,
        )
        return deadline
