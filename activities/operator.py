"""Activities behind the operator actions: calendar loads and the policy summary."""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity

from activities.calendar import CalendarRepository
from activities.policy import PolicySet
from domain.operator_models import (
    LoadCalendarInput,
    LoadCalendarResult,
    PolicySummary,
    PolicySummaryRequest,
)

log = structlog.get_logger(__name__)

OPEN_PROVISIONAL_WORKFLOWS = (
    "SELECT workflow_id FROM cases WHERE deadline_provisional AND closed_at IS NULL"
    " ORDER BY workflow_id"
)


class OperatorActivities:
    def __init__(self, pool: asyncpg.Pool, policies: PolicySet) -> None:
        self._pool, self._policies = pool, policies

    @activity.defn(name="load_calendar_year")
    async def load_calendar_year(self, request: LoadCalendarInput) -> LoadCalendarResult:
        """Replace the year's days; a retry that finds the same arrangement writes nothing."""
        arrangement = request.arrangement
        async with self._pool.acquire() as conn:
            repo = CalendarRepository(conn)
            unchanged = await repo.arrangement(arrangement.year) == arrangement
            if unchanged:
                loaded = await repo.loaded_year(arrangement.year)
                assert loaded is not None
                revision = loaded.revision
            else:
                revision = await repo.replace_year(arrangement, request.loaded_by)
            waiting = [row["workflow_id"] for row in await conn.fetch(OPEN_PROVISIONAL_WORKFLOWS)]
        log.info(
            "calendar loaded",
            year=arrangement.year,
            revision=revision,
            unchanged=unchanged,
            provisional_cases=len(waiting),
        )
        return LoadCalendarResult(
            year=arrangement.year,
            revision=revision,
            unchanged=unchanged,
            provisional_cases=waiting,
        )

    @activity.defn(name="policy_summary")
    async def policy_summary(self, request: PolicySummaryRequest) -> PolicySummary:
        active = self._policies.active(request.on)
        return PolicySummary(
            active_version=active.version,
            effective_from=active.effective_from,
            versions=self._policies.versions,
            categories={key: rules.title for key, rules in active.categories.items()},
        )
