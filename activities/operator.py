"""Activities behind the operator actions: calendar loads, the policy summary, and marking a
case whose run ended without an outcome (failed, terminated…) in the register."""

from __future__ import annotations

import asyncpg
import structlog
from temporalio import activity

from activities.calendar import CalendarRepository
from activities.policy import PolicySet
from domain.operator_models import (
    CaseInterruption,
    InterruptionMarked,
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

# Idempotent: the same run marked again writes nothing. A case that closed, or whose register
# moved on after the run ended (a new run's step: `updated_at` is a step's time), is left alone,
# so a finding that arrives after an operator's reopen cannot mark the reopened case.
MARK_INTERRUPTED = """
UPDATE cases SET interrupted = $2::jsonb
 WHERE case_id = $1
   AND closed_at IS NULL
   AND (interrupted IS NULL OR interrupted->>'run_id' <> $3)
   AND ($4::timestamptz IS NULL OR updated_at <= $4::timestamptz)
"""


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

    @activity.defn(name="mark_case_interrupted")
    async def mark_case_interrupted(self, interruption: CaseInterruption) -> InterruptionMarked:
        status = await self._pool.execute(
            MARK_INTERRUPTED,
            interruption.case_id,
            interruption.register_value(),
            interruption.run_id,
            interruption.ended_at,
        )
        marked = status == "UPDATE 1"
        log.info(
            "case interruption recorded" if marked else "case interruption already recorded",
            case_id=interruption.case_id,
            run_id=interruption.run_id,
            status=interruption.status,
        )
        return InterruptionMarked(case_id=interruption.case_id, marked=marked)
